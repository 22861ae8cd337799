"""Topic names of a stream, shared by ser_node and the launch files (no ROS imports)."""


def sibling_topic(topic: str, name: str) -> str:
    """The topic called `name` in the same namespace as `topic` (audio -> audio_info, /a/audio -> /a/emotion)."""
    head, separator, _ = topic.rpartition('/')
    return f'{head}{separator}{name}'
