"""`python -m studyshare.share api|relay|worker|replay`."""

from studyshare.plumbing.cli import ServiceCLI
from studyshare.share.adapters.projections import Directory
from studyshare.share.service_layer.reactions import MembershipCascade
from studyshare.share.settings import ShareSettings

cli = ServiceCLI(
    settings=ShareSettings,
    app_factory="studyshare.share.entrypoints.api:create_app",
    projections=lambda s: [Directory(), MembershipCascade(s)],
)

if __name__ == "__main__":
    cli()
