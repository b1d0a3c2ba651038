"""The DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile, table E.1-1, as
data: each attribute's action (D replace, Z empty, X remove, U remap the UID; combined codes
such as X/Z let the de-identifier choose). The table is the one `dicom-anonymizer` maintains
(its 2026c edition of the standard); `anonymize` applies it.
"""

from __future__ import annotations

from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as _table

#: the profile's categories in `dicom-anonymizer`, by their action code
_CATEGORIES = {
    "D": _table.D_TAGS,
    "Z": _table.Z_TAGS,
    "X": _table.X_TAGS,
    "U": _table.U_TAGS,
    "Z/D": _table.Z_D_TAGS,
    "X/Z": _table.X_Z_TAGS,
    "X/D": _table.X_D_TAGS,
    "X/Z/D": _table.X_Z_D_TAGS,
    "X/Z/U*": _table.X_Z_U_STAR_TAGS,
}

#: tag -> action code, for every attribute of table E.1-1 (repeating groups by their first)
ANNEX_E: dict[int, str] = {
    (group << 16) | element: code
    for code, tags in _CATEGORIES.items()
    for group, element, *_ in tags
}
#: attributes an anonymized share keeps, empty, where the profile allows Z (type 2 attributes
#: such as the accession number, the study ID and the referring physician)
KEPT_EMPTY = frozenset(tag for tag, code in ANNEX_E.items() if "Z" in code.split("/"))
#: attributes whose UIDs are remapped per share
REMAPPED_UIDS = frozenset(tag for tag, code in ANNEX_E.items() if code == "U")
