"""What `shadowline demo` loads into its master: one item of each replicated kind, as an
operator of SAP Cloud Connector would configure them."""

from __future__ import annotations

from typing import Any

SAMPLES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "subaccount",
        "acme-eu",
        {
            "region": "cf.eu10.hana.ondemand.com",
            "subaccount_id": "8a2c9f1e",
            "display_name": "ACME Europe",
        },
    ),
    (
        "system-mapping",
        "erp-prod",
        {
            "virtual_host": "erp.virtual",
            "virtual_port": 443,
            "internal_host": "erp01.corp.local",
            "internal_port": 44300,
            "protocol": "HTTPS",
            "backend_type": "abapSys",
        },
    ),
    (
        "resource",
        "erp-odata",
        {
            "system_mapping": "erp-prod",
            "path": "/sap/opu/odata",
            "match": "prefix",
            "methods": ["GET", "POST"],
        },
    ),
    (
        "resource",
        "erp-ping",
        {"system_mapping": "erp-prod", "path": "/sap/public/ping", "match": "exact"},
    ),
]
