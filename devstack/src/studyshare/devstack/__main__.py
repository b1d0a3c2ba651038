"""`python -m studyshare.devstack ...` is `studyshare-dev ...`."""

from studyshare.devstack.cli import main

main()
