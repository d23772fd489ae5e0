"""The `sdrest` command: `serve`, `models`, `inspect`, `hash`, `convert`, `version`.

Flags mirror settings (`--models-dir` is `SDREST_MODELS_DIR` is `models_dir` in the config file); exit status 0 on
success, 1 on a failure the message explains, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from sdrest import __version__
from sdrest.library import convert as converter
from sdrest.library.catalog import Catalog, ModelFile, UnknownModel, inspect_file
from sdrest.library.folders import create_folders, folder_for_role
from sdrest.library.hashing import hashes_of, legacy_hash, sha256_file
from sdrest.progress import Bar
from sdrest.settings import FIELDS, SETTING_HELP, SETTING_TYPES, Settings, SettingsError, load_settings
from sdrest.views import describe


class CliError(Exception):
    """A failure to report in one line and exit 1."""


_LIBRARY_SETTINGS = ("models_dir", "data_dir", "config")


def _common(parser: argparse.ArgumentParser, names: Sequence[str] = _LIBRARY_SETTINGS) -> None:
    """A flag for each named setting: `--models-dir` for `models_dir`, typed as the setting is."""
    for name in names:
        kind, help_text = SETTING_TYPES[name], SETTING_HELP.get(name, "")
        flag = "--" + name.replace("_", "-")
        env = f"SDREST_{name.upper()}"
        convert = _boolean if kind is bool else json.loads if kind is dict else kind
        parser.add_argument(flag, type=convert, dest=name, metavar=name.upper(), help=f"{help_text} ({env})".strip())


def _boolean(text: str) -> bool:
    """true/false, yes/no, on/off, 1/0 for a flag that takes a boolean setting."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r} (true or false)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdrest", description="Image and video generation server over stable-diffusion.cpp"
    )
    parser.add_argument("--version", action="version", version=f"sdrest {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server")
    _common(serve, list(FIELDS))  # every setting is a flag of `serve`

    models = sub.add_parser("models", help="list the model library")
    _common(models)
    models.add_argument("--json", action="store_true", help="machine-readable output")

    inspect = sub.add_parser("inspect", help="show what a model file is and how it would load")
    _common(inspect)
    inspect.add_argument("file", help="a path, or a model's name in the library")
    inspect.add_argument("--json", action="store_true")

    hash_ = sub.add_parser("hash", help="SHA-256, AutoV2 and legacy hashes of model files")
    _common(hash_)
    hash_.add_argument("files", nargs="+")
    hash_.add_argument("--json", action="store_true")

    conv = sub.add_parser("convert", help="quantize a model to GGUF into the library")
    _common(conv)
    conv.add_argument("source", help="a path, or a model's name in the library")
    conv.add_argument("--type", required=True, choices=converter.CONVERT_TYPES, metavar="TYPE",
                      help=f"one of {', '.join(converter.CONVERT_TYPES)}")  # fmt: skip
    conv.add_argument("-o", "--output", help="output file (a bare name goes into the source's library folder)")
    conv.add_argument("--force", action="store_true", help="overwrite an existing output file")

    keys = sub.add_parser("keys", help="API keys: create (shown once), list, revoke")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create", help="make a key; it is printed once and stored only as a hash")
    create.add_argument("name")
    create.add_argument("--role", choices=["user", "admin"], default="user")
    create.add_argument("--expires", type=float, metavar="DAYS", help="days until it stops working")
    keys_sub.add_parser("list", help="keys with their prefixes, roles and last use")
    revoke = keys_sub.add_parser("revoke", help="stop a key from working (by id, prefix or name)")
    revoke.add_argument("key")
    for action in keys_sub.choices.values():
        _common(action, ("data_dir", "config"))

    users = sub.add_parser("users", help="local users who log in for tokens (auth = jwt)")
    users_sub = users.add_subparsers(dest="action", required=True)
    add = users_sub.add_parser("add", help="add a user (the password is asked for, or read from stdin)")
    add.add_argument("name")
    add.add_argument("--role", choices=["user", "admin"], default="user")
    passwd = users_sub.add_parser("passwd", help="set a user's password (their sessions end)")
    passwd.add_argument("name")
    remove = users_sub.add_parser("remove", help="remove a user (their sessions end)")
    remove.add_argument("name")
    users_sub.add_parser("list", help="users and their roles")
    for action in users_sub.choices.values():
        _common(action, ("data_dir", "config"))
        action.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    pull = sub.add_parser("pull", help="download a starter model with every file its loading plan needs")
    _common(pull)
    pull.add_argument("name", nargs="?", help="a starter's name; without one, the list")

    version = sub.add_parser("version", help="sdrest, binding, sd.cpp and the compute backend it was built with")
    version.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (CliError, SettingsError, UnknownModel) as e:
        print(f"sdrest {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _settings(args: argparse.Namespace) -> Settings:
    flags = {k: getattr(args, k, None) for k in FIELDS}
    return load_settings(flags)


def _catalog(settings: Settings) -> Catalog:
    return Catalog(settings.models_path, settings.data_dir / "library.sqlite3")


def _print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")


# -- commands ---------------------------------------------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def cmd_models(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.models_path.exists():
        create_folders(settings.models_path)
    catalog = _catalog(settings)
    entries = catalog.scan(progress=None if args.json else lambda name: print(f"reading {name}", file=sys.stderr))
    if args.json:
        _print_json([describe(e, entries) for e in entries])
        return 0
    if not entries:
        print(f"No model files under {settings.models_path}. Put them in its typed folders (see README.md).")
        return 0
    rows = [("NAME", "ROLE", "ARCHITECTURE", "SIZE", "FORMAT", "WARNINGS")]
    for e in entries:
        view = describe(e, entries)
        notes = e.error if e.broken else view.plan_error or "; ".join(view.warnings)
        fmt = e.format or "-"
        if e.details.get("quantization"):
            fmt += f" {e.details['quantization']}"
        rows.append((e.name, "broken" if e.broken else e.role, e.architecture or "-", _size(e.size), fmt, notes or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5])
    return 0


def _resolve(catalog: Catalog, given: str) -> ModelFile:
    """A library entry for a name or a path; a file outside the library is inspected on its own."""
    path = Path(given)
    if path.is_file():
        resolved = str(path.resolve())
        for entry in catalog.entries:
            if entry.path == resolved:
                return entry
        return inspect_file(path.resolve(), path.name)[0]
    if path.exists():
        raise CliError(f"{given} is not a file")
    return catalog.get(given)


def cmd_inspect(args: argparse.Namespace) -> int:
    catalog = _catalog(_settings(args))
    catalog.scan()
    entry = _resolve(catalog, args.file)
    view = describe(entry, catalog.entries)
    _, metadata = inspect_file(Path(entry.path), entry.name) if not entry.broken else (None, {})
    if args.json:
        _print_json({**msgspec.to_builtins(view), "metadata": metadata})
        return 0 if not entry.broken else 1
    print(f"{entry.name}  ({_size(entry.size)}, {entry.format or 'unreadable'})")
    if entry.broken:
        print(f"  broken: {entry.error}")
        return 1
    print(f"  role:          {entry.role}")
    print(
        f"  architecture:  {entry.architecture or '-'}"
        + (f"  (sd.cpp: {entry.sd_version})" if entry.sd_version else "")
    )
    for key, value in entry.details.items():
        print(f"  {key + ':':<14} {value}")
    if view.plan:
        print("  loads as:")
        for arg, path in view.plan.items():
            print(f"    {arg:<34} {path}")
    if view.plan_error:
        print(f"  cannot load:   {view.plan_error}")
    for warning in view.warnings:
        print(f"  warning:       {warning}")
    if metadata:
        print("  metadata:")
        for key, value in metadata.items():
            print(f"    {key}: {value if len(value) < 200 else value[:200] + '…'}")
    return 0


def cmd_hash(args: argparse.Namespace) -> int:
    catalog = _catalog(_settings(args))
    catalog.scan()
    results: list[dict[str, Any]] = []
    for given in args.files:
        entry = _resolve(catalog, given)
        path = Path(entry.path)
        cached = catalog.cached_hashes(entry)
        if cached:
            hashes = hashes_of(*cached)
        else:
            bar = Bar(Path(entry.name).name, unit="bytes")
            hashes = hashes_of(sha256_file(path, progress=bar), legacy_hash(path))
            bar.close()
            catalog.store_hashes(entry, hashes.sha256, hashes.legacy)
        results.append({"path": str(path), **msgspec.to_builtins(hashes)})
        if not args.json:
            print(f"{hashes.sha256}  {given}")
    if args.json:
        _print_json(results)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    settings = _settings(args)
    catalog = _catalog(settings)
    catalog.scan()
    source = _resolve(catalog, args.source)
    src = Path(source.path)
    folder = (
        src.parent if src.is_relative_to(catalog.models_dir) else settings.models_path / folder_for_role(source.role)
    )
    if args.output is None:
        output = converter.default_output(src, args.type, folder)
    elif Path(args.output).name == args.output:
        output = folder / args.output
    else:
        output = Path(args.output)
    bar = Bar(f"{src.name} → {args.type}")
    try:
        converter.convert(src, output, args.type, force=args.force, progress=bar)
    except converter.ConvertError as e:
        raise CliError(str(e)) from e
    finally:
        bar.close()
    print(output)
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    from sdrest.engine.errors import EngineError
    from sdrest.engine.supervisor import probe_build

    try:
        info = {"sdrest": __version__, **probe_build()}
    except EngineError as e:
        raise CliError(f"the stable-diffusion.cpp binding does not load: {e}") from e
    if args.json:
        _print_json(info)
        return 0
    print(f"sdrest {info['sdrest']}")
    print(f"stable-diffusion-cpp-python {info['binding']} (sd.cpp {info['sd_cpp']})")
    print(f"backend: {info['backend']} (compiled in: {', '.join(info['backends'])})")
    tinyblas = "on" if info["tinyblas"] else "off"
    print(f"CPU: {info['physical_cores']} physical cores; {' '.join(info['cpu_features'])}; tinyBLAS {tinyblas}")
    return 0


def _when(timestamp: float | None) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp)) if timestamp else "-"


def cmd_keys(args: argparse.Namespace) -> int:
    import time

    from sdrest.auth.api_keys import KeyStore

    settings = _settings(args)
    store = KeyStore(settings.data_dir / "auth.sqlite3", settings.api_key_file)
    if args.action == "create":
        expires = time.time() + args.expires * 86400 if args.expires else None
        key, record = store.create(args.name, args.role, expires)
        print(key)
        print(f"(shown once; {record.prefix}, role {record.role}, expires {_when(record.expires_at)})", file=sys.stderr)
    elif args.action == "list":
        for record in store.list():
            state = "revoked" if record.revoked else f"expires {_when(record.expires_at)}"
            used = _when(record.last_used_at)
            print(f"{record.prefix:<14} {record.name:<20} {record.role:<6} {state:<26} last used {used}")
    else:
        try:
            record = store.revoke(args.key)
        except KeyError as e:
            raise CliError(f"no key {args.key!r}") from e
        except ValueError as e:  # a key from api_key_file: remove it from that file instead
            raise CliError(str(e)) from e
        print(f"revoked {record.prefix} ({record.name})")
    return 0


def _new_password(args: argparse.Namespace) -> str:
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise CliError("the passwords differ")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    from sdrest.auth.tokens import TokenIssuer, load_or_create_secret
    from sdrest.auth.users import UserExists, UserStore

    settings = _settings(args)
    store = UserStore(settings.data_dir / "auth.sqlite3")
    try:
        if args.action == "add":
            user = store.add(args.name, _new_password(args), args.role)
            print(f"added {user.name} ({user.role})")
        elif args.action == "list":
            for user in store.list():
                print(f"{user.name:<24} {user.role:<6} {'disabled' if user.disabled else ''}")
        else:
            if store.get(args.name) is None:
                raise CliError(f"no user {args.name!r}")
            if args.action == "passwd":
                store.set_password(args.name, _new_password(args))
            else:
                store.remove(args.name)
            secret = load_or_create_secret(settings.data_dir / "jwt-secret")
            TokenIssuer(secret, settings.data_dir / "auth.sqlite3").revoke_subject(args.name)
            print(f"{'password changed for' if args.action == 'passwd' else 'removed'} {args.name}; their sessions end")
    except (ValueError, UserExists) as e:
        raise CliError(str(e)) from e
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from sdrest.library import downloads, starters

    if not args.name:
        for starter in starters.STARTERS.values():
            size = sum(f.size for f in starter.files)
            print(f"{starter.name:<16} {_size(size):>10}  {starter.description}")
        return 0
    try:
        starter = starters.starter(args.name)
    except KeyError as e:
        raise CliError(str(e.args[0])) from None
    settings = _settings(args)
    create_folders(settings.models_path)
    for file in starter.files:
        dest = settings.models_path / folder_for_role(file.role) / Path(file.filename).name
        if dest.exists():
            print(f"have {dest}")
            continue
        bar = Bar(Path(file.filename).name, unit="bytes")

        def show(done: int, total: int | None, bar: Bar = bar) -> None:
            bar(done, total or max(done, 1))

        try:
            downloads.download_hub(
                file.repo_id,
                file.filename,
                dest,
                revision=file.revision,
                token=settings.hf_token or None,
                progress=show,
                partial_dir=settings.data_dir / "downloads",
            )
        except downloads.DownloadError as e:
            raise CliError(f"{file.repo_id}/{file.filename}: {e}") from e
        finally:
            bar.close()
        print(f"saved {dest}")
    print(f"{starter.name} is ready: sdrest serve --models-dir {settings.models_path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:

    import uvicorn

    from sdrest import service
    from sdrest.access import unsafe_bind
    from sdrest.app import create_app

    settings = _settings(args)
    if (problem := unsafe_bind(settings)) is not None:
        raise CliError(problem)
    service.configure_logging(settings.log_level)
    create_folders(settings.models_path)
    app = create_app(settings, reload=lambda: _settings(args))
    # Open SSE streams would hold a graceful shutdown forever; five seconds is plenty for the rest.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                            log_level=settings.log_level, timeout_graceful_shutdown=5)  # fmt: skip
    service.ReadyServer(config).run()
    return 0


_COMMANDS = {
    "serve": cmd_serve,
    "models": cmd_models,
    "inspect": cmd_inspect,
    "hash": cmd_hash,
    "convert": cmd_convert,
    "version": cmd_version,
    "pull": cmd_pull,
    "keys": cmd_keys,
    "users": cmd_users,
}

if __name__ == "__main__":
    raise SystemExit(main())
