"""Prints the argon2 hash of a password read from stdin, for ALIVE_REVIEW_WEB__REVIEWERS."""

import sys

from services.review.web.auth import hash_password

if __name__ == "__main__":
    print(hash_password(sys.stdin.readline().rstrip("\n")))
