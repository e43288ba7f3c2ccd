"""Mistakes a type checker must catch in user code (test_typing.py expects exactly these errors): proof that the
check of usage.py sees keyway's types and is not passing over them as Any."""

import keyway
from keyway.ray import RaySecret

keyway.get_secret(b"local://token")  # a reference is text
token: str = keyway.get_secret("local://token").value  # a SecretValue: its text is .value()
length: int = RaySecret("db", b"pw").value()  # the text, not a number
