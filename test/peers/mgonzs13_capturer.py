"""Peer process: publishes a sound file as mgonzs13/audio_common's audio_capturer_node does
(audio_common_msgs/AudioStamped, typed arrays, PortAudio format code, `chunk` frames a message).

    mgonzs13_capturer.py TOPIC FILE FORMAT_CODE CHANNELS CHUNK   (run with the mgonzs13 overlay sourced)
"""
import sys
import time

import numpy as np
import rclpy
import soundfile as sf
from audio_common_msgs.msg import AudioStamped
from rclpy.qos import QoSProfile, ReliabilityPolicy

from ser_ros.audio_flavour import PORTAUDIO_FORMATS

SCALE = {'<f4': 1.0, '<i4': 2 ** 31 - 1, '<i2': 2 ** 15 - 1, 'i1': 127, 'u1': 127}


def main():
    topic, path, code, channels, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    field, _, dtype = PORTAUDIO_FORMATS[code]
    audio, rate = sf.read(path, dtype='float32')
    frames = np.repeat(audio[:, None], channels, axis=1)
    samples = frames * SCALE[dtype] + (128 if dtype == 'u1' else 0)
    samples = np.round(samples).astype(dtype) if dtype != '<f4' else samples.astype(dtype)
    rclpy.init()
    node = rclpy.create_node('mgonzs13_capturer')
    # Reliable, so the test can count every window (the real capturer is best effort; ser_node's
    # default best-effort subscription takes either).
    publisher = node.create_publisher(AudioStamped, topic, QoSProfile(depth=100,
                                                                      reliability=ReliabilityPolicy.RELIABLE))
    deadline = time.monotonic() + 30
    while publisher.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            sys.exit(f'nobody subscribed to {topic} within 30 s')
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(1.0)
    start_ns = 1_700_000_000 * 10 ** 9
    for index, begin in enumerate(range(0, len(samples), chunk)):
        msg = AudioStamped()
        stamp = start_ns + index * chunk * 10 ** 9 // rate
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp // 10 ** 9, stamp % 10 ** 9
        msg.header.frame_id = 'respeaker'
        setattr(msg.audio.audio_data, field, samples[begin:begin + chunk].reshape(-1).tolist())
        msg.audio.info.format, msg.audio.info.channels = code, channels
        msg.audio.info.rate, msg.audio.info.chunk = rate, chunk
        publisher.publish(msg)
        time.sleep(chunk / rate / 2)
    print(f'published {index + 1}', flush=True)
    time.sleep(1.0)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == '__main__':
    main()
