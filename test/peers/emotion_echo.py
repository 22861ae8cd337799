"""Peer process for the DDS test: answers every AudioData with an Emotion describing it.

It proves that both message types cross a process boundary over real DDS: the Emotion's
label carries the byte count and checksum of the audio it answers.
"""
import sys
import zlib

import rclpy
from audio_common_msgs.msg import AudioData
from rclpy.node import Node
from ser_msgs.msg import Emotion


class EmotionEcho(Node):
    def __init__(self):
        super().__init__('emotion_echo')
        self.publisher = self.create_publisher(Emotion, 'echo/emotion', 10)
        self.create_subscription(AudioData, 'echo/audio', self.on_audio, 10)

    def on_audio(self, msg):
        data = bytes(msg.data)
        reply = Emotion()
        reply.header.stamp = self.get_clock().now().to_msg()
        reply.label = f'{len(data)}:{zlib.crc32(data)}'
        reply.labels = ['bytes', 'rest']
        reply.probabilities = [1.0, 0.0]
        reply.confidence = 1.0
        reply.voiced = True
        reply.model = 'emotion_echo'
        self.publisher.publish(reply)


def main():
    rclpy.init(args=sys.argv)
    node = EmotionEcho()
    print('ready', flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
