"""The data contract: how any user's `customers`, `events` and `contacts` tables become the normalised frames
every later step consumes, with each rejected row quarantined under one clear reason (docs/data-contract.md).
"""

from journey.contract.core import (
    TableReport,
    ValidatedData,
    empty_contacts,
    empty_quarantine,
    validate,
    validate_dir,
    write_quarantine,
)
from journey.contract.schema import (
    NORMALISED_COLUMNS,
    OPTIONAL_COLUMNS,
    QUARANTINE_COLUMNS,
    REQUIRED_COLUMNS,
    contract_columns,
    empty_frame,
)

__all__ = [
    "NORMALISED_COLUMNS",
    "OPTIONAL_COLUMNS",
    "QUARANTINE_COLUMNS",
    "REQUIRED_COLUMNS",
    "TableReport",
    "ValidatedData",
    "contract_columns",
    "empty_contacts",
    "empty_frame",
    "empty_quarantine",
    "validate",
    "validate_dir",
    "write_quarantine",
]
