"""The first command a newcomer runs: trains every part tiny on a CPU and says what it did.

    python launch.py --config=quickstart

For now it trains the semantic stage (`semantic_tiny`) on a synthetic Markov source and reports
how close it came to the source's true entropy. It grows with the project until it goes from
audio to audio.
"""

from configs import semantic_tiny


def get_config():
    c = semantic_tiny.get_config()
    c.workflow = "quickstart"
    return c
