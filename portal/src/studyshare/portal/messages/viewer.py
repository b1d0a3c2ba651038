# ruff: noqa: E501 - a message catalogue: one message per line reads best
"""The words of the image viewer and its buttons on the study page."""

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "viewer.title": "Image viewer",
        "viewer.open": "Open viewer",
        "viewer.weasis": "Open in Weasis",
        "viewer.weasis_hint": "For desktop users with Weasis installed: it loads this study from StudyShare for a few minutes.",
        "viewer.weasis_failed": "Weasis could not be opened for this study.",
        "viewer.ended": "Your access to this study ended: the viewer can no longer load it.",
        "viewer.back": "Back to the study",
        "viewer.noscript": "The image viewer needs JavaScript.",
        "viewer.not_installed": "The image viewer is not installed on this server.",
    },
    "nl": {
        "viewer.title": "Beeldviewer",
        "viewer.open": "Viewer openen",
        "viewer.weasis": "Openen in Weasis",
        "viewer.weasis_hint": "Voor wie Weasis op de computer heeft: het laadt dit onderzoek enkele minuten lang uit StudyShare.",
        "viewer.weasis_failed": "Weasis kon niet geopend worden voor dit onderzoek.",
        "viewer.ended": "Uw toegang tot dit onderzoek is beëindigd: de viewer kan het niet meer laden.",
        "viewer.back": "Terug naar het onderzoek",
        "viewer.noscript": "De beeldviewer heeft JavaScript nodig.",
        "viewer.not_installed": "De beeldviewer is niet geïnstalleerd op deze server.",
    },
    "fr": {
        "viewer.title": "Visionneuse d'images",
        "viewer.open": "Ouvrir la visionneuse",
        "viewer.weasis": "Ouvrir dans Weasis",
        "viewer.weasis_hint": "Pour les ordinateurs où Weasis est installé : il charge cet examen depuis StudyShare pendant quelques minutes.",
        "viewer.weasis_failed": "Weasis n'a pas pu être ouvert pour cet examen.",
        "viewer.ended": "Votre accès à cet examen a pris fin : la visionneuse ne peut plus le charger.",
        "viewer.back": "Retour à l'examen",
        "viewer.noscript": "La visionneuse d'images nécessite JavaScript.",
        "viewer.not_installed": "La visionneuse d'images n'est pas installée sur ce serveur.",
    },
    "de": {
        "viewer.title": "Bildbetrachter",
        "viewer.open": "Betrachter öffnen",
        "viewer.weasis": "In Weasis öffnen",
        "viewer.weasis_hint": "Für Computer mit installiertem Weasis: Es lädt diese Untersuchung einige Minuten lang aus StudyShare.",
        "viewer.weasis_failed": "Weasis konnte für diese Untersuchung nicht geöffnet werden.",
        "viewer.ended": "Ihr Zugriff auf diese Untersuchung ist beendet: Der Betrachter kann sie nicht mehr laden.",
        "viewer.back": "Zurück zur Untersuchung",
        "viewer.noscript": "Der Bildbetrachter benötigt JavaScript.",
        "viewer.not_installed": "Der Bildbetrachter ist auf diesem Server nicht installiert.",
    },
}
