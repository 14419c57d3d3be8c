"""One module per prohibition; importing this package registers every rule."""
from detectors.rules import (  # noqa: F401
    borrowers,
    disclosure_lapse,
    disclosures,
    fund_pool,
    misappropriation,
    payments,
    registration,
    self_financing,
    tips,
    typologies,
    yields,
)
