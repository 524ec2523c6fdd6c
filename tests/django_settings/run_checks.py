"""Run Django's system checks once per scenario and print the celery_svcjwt messages as JSON.

    DJANGO_SETTINGS_MODULE=tests.django_settings.settings python -m tests.django_settings.run_checks < scenarios.json

The input maps a scenario name to {"settings": {...}, "env": {...}}: settings
are applied with override_settings (None unsets a CELERY_SVCJWT_* setting, as
the check reads None as "not set"), env variables are set for the scenario.
"""

import json
import os
import sys

import django


def main() -> None:
    scenarios = json.load(sys.stdin)
    django.setup()
    from django.core import checks
    from django.test.utils import override_settings

    results = {}
    for name, scenario in scenarios.items():
        saved = dict(os.environ)
        os.environ.update(scenario.get("env", {}))
        try:
            with override_settings(**scenario.get("settings", {})):
                messages = checks.run_checks(tags=scenario.get("tags"))
        finally:
            os.environ.clear()
            os.environ.update(saved)
        results[name] = [
            {"id": m.id, "level": m.level, "msg": m.msg, "hint": m.hint}
            for m in messages
            if (m.id or "").startswith("celery_svcjwt.")
        ]
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
