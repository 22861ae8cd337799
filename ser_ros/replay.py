"""ser-replay: play any rosbag2 (mcap or sqlite3) onto live ROS 2 topics at the recorded timing.

    ser-replay BAG [--rate 2.0] [--loop] [--start-offset 5.0] [--remap /audio/audio:=/mic/audio]
               [--topics /audio/audio_stamped /audio/audio_info] [--wait-for-subscribers 1]

Messages are published as recorded (serialized CDR, no re-encoding). AudioInfo topics are latched
(transient local), as audio_capture publishes them; everything else is reliable with depth 100.
Built on rosbags (pure Python reader) and rclpy; use it where `ros2 bag play` is not available.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import Reader

LATCHED_TYPES = {'audio_common_msgs/msg/AudioInfo'}


def message_class(msgtype: str):
    package, kind, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{package}.{kind}'), name)


class BagPlayer:
    """Publishes a bag's messages with the recorded spacing, scaled by 1/rate."""

    def __init__(self, node, bag, rate: float = 1.0, remap: dict | None = None, start_offset: float = 0.0,
                 topics=None):
        if rate <= 0:
            raise ValueError('rate must be positive')
        self.node, self.bag, self.rate, self.start_offset = node, Path(bag), rate, start_offset
        self.remap = remap or {}
        self.topics = set(topics) if topics else None
        self.publishers = {}
        self.published = 0
        with Reader(self.bag) as reader:
            for connection in reader.connections:
                if self.topics is not None and connection.topic not in self.topics:
                    continue
                try:
                    cls = message_class(connection.msgtype)
                except (ImportError, AttributeError, ValueError):
                    node.get_logger().warning(f'skipping {connection.topic}: type {connection.msgtype} not installed')
                    continue
                latched = connection.msgtype in LATCHED_TYPES
                qos = QoSProfile(depth=1 if latched else 100, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
                topic = self.remap.get(connection.topic, connection.topic)
                self.publishers[connection.id] = node.create_publisher(cls, topic, qos)

    def wait_for_subscribers(self, count: int, timeout: float = 30.0) -> bool:
        import rclpy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() >= count for p in self.publishers.values()):
                return True
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return False

    def play_once(self, spin=None) -> int:
        """Publish the bag once; `spin(seconds)` is called while waiting (defaults to sleeping)."""
        wait = spin or time.sleep
        sent = 0
        with Reader(self.bag) as reader:
            connections = [c for c in reader.connections if c.id in self.publishers]
            first_ns = reader.start_time + int(self.start_offset * 1e9)
            started = time.monotonic()
            for connection, log_ns, raw in reader.messages(connections=connections, start=first_ns):
                due = started + (log_ns - first_ns) / 1e9 / self.rate
                while (remaining := due - time.monotonic()) > 0:
                    wait(min(remaining, 0.01))
                self.publishers[connection.id].publish(bytes(raw))
                sent += 1
        self.published += sent
        return sent


def parse_remaps(items) -> dict:
    remap = {}
    for item in items or ():
        if ':=' not in item:
            raise SystemExit(f'--remap {item!r}: expected OLD:=NEW')
        old, new = item.split(':=', 1)
        remap[old] = new
    return remap


def main(argv=None) -> int:
    import rclpy
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('bag', help='rosbag2 directory (or .mcap / .db3 file)')
    parser.add_argument('--rate', type=float, default=1.0, help='playback speed factor')
    parser.add_argument('--loop', action='store_true', help='play again and again until interrupted')
    parser.add_argument('--start-offset', type=float, default=0.0, help='seconds into the bag to start from')
    parser.add_argument('--remap', action='append', default=[], metavar='OLD:=NEW', help='rename a topic')
    parser.add_argument('--topics', nargs='*', help='only these topics')
    parser.add_argument('--wait-for-subscribers', type=int, default=0, metavar='N',
                        help='wait until every topic has N subscribers before playing')
    args, ros_args = parser.parse_known_args(argv)
    rclpy.init(args=[sys.argv[0], *ros_args])
    node = rclpy.create_node('ser_replay')
    try:
        player = BagPlayer(node, args.bag, args.rate, parse_remaps(args.remap), args.start_offset, args.topics)
        if args.wait_for_subscribers and not player.wait_for_subscribers(args.wait_for_subscribers):
            node.get_logger().error('timed out waiting for subscribers')
            return 1
        while True:
            sent = player.play_once(lambda seconds: rclpy.spin_once(node, timeout_sec=seconds))
            node.get_logger().info(f'played {sent} messages from {args.bag}')
            if not args.loop:
                break
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
