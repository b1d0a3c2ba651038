"""The share service's use cases, one module per job: `sharing`, `revocation`, `two_factor`,
`views` and `preferences` (favorites, labels, defaults), on the stores and helpers of `base`.
Each looks up the facts, lets the domain decide, appends, and renders the read model."""

from __future__ import annotations

from studyshare.share.service_layer.preferences import Preferences
from studyshare.share.service_layer.revocation import Revocation
from studyshare.share.service_layer.sharing import Sharing
from studyshare.share.service_layer.two_factor import TwoFactor
from studyshare.share.service_layer.views import Views


class ShareService(Sharing, Revocation, TwoFactor, Views, Preferences):
    """The use cases of the share service."""
