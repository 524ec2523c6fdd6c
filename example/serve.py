"""Serve the example API on loopback with waitress, a real multi-threaded WSGI server.

    python -m example.serve --port 8000 --user svc --password s3cret

Creates the SQLite database and the service account first.  With ``--port 0``
the OS picks a free port; the chosen URL is printed as ``serving <url>`` and,
with ``--url-file``, written to that file once the server accepts connections.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile


def prepare(db: str, username: str, password: str) -> None:
    os.environ["EXAMPLE_API_DB"] = db
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.apiproject.settings")
    import django

    django.setup()
    if os.environ.get("EXAMPLE_API_CLOCK_OFFSET"):
        from example.apiproject import clock

        clock.apply(float(os.environ["EXAMPLE_API_CLOCK_OFFSET"]))
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    User = get_user_model()
    account = {User.USERNAME_FIELD: username}
    if not User.objects.filter(**account).exists():
        User.objects.create_user(**account, password=password)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--user", default=os.environ.get("SVC_ACCT_USER", "svc-worker"))
    parser.add_argument("--password", default=os.environ.get("SVC_ACCT_PASS"))
    parser.add_argument("--db", default=None, help="SQLite file (default: a new temporary file)")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--url-file", default=None)
    args = parser.parse_args(argv)
    if not args.password:
        parser.error("give --password or set SVC_ACCT_PASS")
    db = args.db or os.path.join(tempfile.mkdtemp(prefix="example-api-"), "db.sqlite3")
    prepare(db, args.user, args.password)

    from waitress.server import create_server

    from example.apiproject.wsgi import application

    server = create_server(application, host="127.0.0.1", port=args.port, threads=args.threads)
    url = f"http://127.0.0.1:{server.effective_port}/"
    print(f"serving {url}", flush=True)
    if args.url_file:
        tmp = args.url_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(url)
        os.replace(tmp, args.url_file)
    try:
        server.run()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
