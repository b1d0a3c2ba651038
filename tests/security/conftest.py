"""The security suite (issue 15): one module per rule an attacker tried to break, each test
going through the gateway of the shared end-to-end platform (`tests/conftest.py`).

Every test here failed on the code before its fix; the commit that added it names it.
Import the story helpers with `from ..storykit import ...`.
"""
