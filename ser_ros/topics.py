"""Topic names of a stream, shared by ser_node and the launch files (no ROS imports)."""


def sibling_topic(topic: str, name: str) -> str:
    """The topic called `name` in the same namespace as `topic` (audio -> audio_info, /a/audio -> /a/emotion)."""
    head, separator, _ = topic.rpartition('/')
    return f'{head}{separator}{name}'


def voice_id(topic: str) -> str:
    """A ROS4HRI voice id for an audio topic: its namespace (/front/audio -> front, /audio/audio ->
    audio), or the topic's own name without one; characters outside [A-Za-z0-9_] become _."""
    parts = [part for part in topic.split('/') if part]
    name = parts[-2] if len(parts) > 1 else (parts[0] if parts else 'voice')
    return ''.join(c if c.isalnum() or c == '_' else '_' for c in name)
