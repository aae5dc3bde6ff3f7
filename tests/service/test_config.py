"""The configuration file and the environment: precedence, and one clear line for a mistake
before anything is mounted."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from filesystem.mounting import Mount, Mounter, is_mounted, run_b2fs

from b2fs.config import env_name, resolve
from b2fs.options import OPTIONS, OptionError
from service.conftest import BUCKET, B2View


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_command_line_beats_environment_beats_file(tmp_path: Path) -> None:
    config = write(
        tmp_path / "m.toml",
        'source = "from-file"\nmountpoint = "mnt"\nkey_file = "keys/m.key"\n'
        'endpoint = "http://file.invalid"\n'
        'cache_size = "64M"\ndir_timeout = 5\nattr_timeout = "3s"\nunlink = "delete"\n'
        'umask = "027"\nversion_at = 2026-11-26T12:00:00Z\n',
    )
    env = {
        "B2FS_CACHE_SIZE": "128M",
        "B2FS_DIR_TIMEOUT": "7",
        "B2FS_UNLINK": "",  # empty: unset
        "B2FS_ENDPOINT": "http://env.invalid",
        "B2FS_MODEL_EXAMPLES": "9",  # not an option: not read
    }
    got = resolve(
        config_file=config,
        environ=env,
        cli_settings={"source": None, "mountpoint": None},
        cli_options=["cache_size=256M"],
    )
    assert got.options.cache_size == 256 << 20  # command line
    assert got.options.dir_timeout == 7.0  # environment
    assert got.options.attr_timeout == 3.0 and got.options.unlink == "delete"  # file
    assert got.options.umask == 0o027
    noon = datetime.datetime(2026, 11, 26, 12, tzinfo=datetime.UTC)
    assert got.options.version_at == int(noon.timestamp() * 1000)
    assert got.source == "from-file" and got.mountpoint == tmp_path / "mnt"
    assert got.key_file == tmp_path / "keys" / "m.key"  # relative to the file
    assert got.endpoint is None  # the environment's B2FS_ENDPOINT wins over the file's
    got = resolve(
        config_file=config,
        environ={},
        cli_settings={"source": "cli-bucket/p", "endpoint": "http://cli.invalid"},
        cli_options=[],
    )
    assert got.source == "cli-bucket/p" and got.endpoint == "http://cli.invalid"
    assert got.options.cache_size == 64 << 20
    assert resolve(config_file=config, environ={}, cli_settings={}, cli_options=[]).endpoint == (
        "http://file.invalid"
    )


def test_options_of_every_kind_from_the_environment_and_the_file(tmp_path: Path) -> None:
    given = {
        "cache_size": ("1G", 1 << 30),
        "readahead": ("32M", 32 << 20),
        "dir_timeout": ("2m", 120.0),
        "writeback_delay": ("500ms", 0.5),
        "ro": ("true", True),
        "unlink": ("delete", "delete"),
        "umask": ("077", 0o077),
        "upload_concurrency": ("4", 4),
        "metrics": ("9101", "127.0.0.1:9101"),
        "versions_dir": ("none", "none"),
    }
    env = {env_name(name): text for name, (text, _) in given.items()}
    got = resolve(config_file=None, environ=env, cli_settings={}, cli_options=[])
    assert {name: getattr(got.options, name) for name in given} == {
        name: value for name, (_, value) in given.items()
    }
    assert all(env_name(name) == "B2FS_" + name.upper() for name in OPTIONS)
    config = write(
        tmp_path / "all.toml",
        "ro = true\nupload_concurrency = 4\nfsname = 'x'\ncache_size = 1073741824\n"
        "umask = 0o077\nwriteback_delay = 0.5\nmetrics = '[::1]:9101'\n",
    )
    got = resolve(config_file=config, environ={}, cli_settings={}, cli_options=[])
    assert (got.options.ro, got.options.upload_concurrency, got.options.fsname) == (True, 4, "x")
    assert (got.options.cache_size, got.options.umask) == (1 << 30, 0o077)
    assert (got.options.writeback_delay, got.options.metrics) == (0.5, "[::1]:9101")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cache_sise = '1G'\n", "unknown key 'cache_sise' (did you mean 'cache_size'?)"),
        ("[options]\nro = true\n", "unknown key 'options'"),
        ("cache_size = true\n", "option cache_size: True is a boolean, expected size"),
        ("ro = 'yes'\n", "option ro: 'yes' is a string, expected true or false"),
        ("upload_concurrency = '8'\n", "option upload_concurrency: '8' is a string"),
        ("unlink = 'shred'\n", "option unlink: 'shred' is not one of hide, delete"),
        ("cache_size = '1M'\n", "option cache_size: '1M' is below the minimum"),
        ("dir_timeout = [1]\n", "option dir_timeout: [1] has the wrong type"),
        ("mountpoint = 7\n", "key 'mountpoint': 7 is not a string"),
        ("cache_size = \n", "not valid TOML"),
    ],
)
def test_a_mistake_in_the_file_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    config = write(tmp_path / "bad.toml", text)
    with pytest.raises(OptionError) as raised:
        resolve(config_file=config, environ={}, cli_settings={}, cli_options=[])
    message = str(raised.value)
    assert message.startswith(f"{config}: ") and expected in message
    assert "\n" not in message


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(OptionError) as raised:
        resolve(
            config_file=None,
            environ={"B2FS_CACHE_SIZE": "lots"},
            cli_settings={},
            cli_options=[],
        )
    assert str(raised.value).startswith("environment B2FS_CACHE_SIZE: option cache_size: 'lots'")


def test_b2fs_mount_refuses_a_bad_file_before_mounting(
    b2: B2View, mounter: Mounter, tmp_path: Path
) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    cache = tmp_path / "cache"
    config = write(
        tmp_path / "bad.toml",
        f'source = "{BUCKET}"\nmountpoint = "{mountpoint}"\ncache_dir = "{cache}"\n'
        "cache_size = 'plenty'\n",
    )
    result = run_b2fs(["mount", "--config", str(config)], mounter.env(), check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"b2fs: {config}: option cache_size: 'plenty' is not a size (examples: 4096, 512K, 8M, 10G)"
    ]
    assert not is_mounted(mountpoint) and not cache.exists()
    env = {**mounter.env(), "B2FS_UNLINK": "shred"}
    config.write_text(f'source = "{BUCKET}"\nmountpoint = "{mountpoint}"\n')
    result = run_b2fs(["mount", "--config", str(config)], env, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "b2fs: environment B2FS_UNLINK: option unlink: 'shred' is not one of hide, delete"
    )
    assert not is_mounted(mountpoint)


def test_mount_from_a_config_file_with_environment_and_command_line(
    b2: B2View, mounter: Mounter, tmp_path: Path
) -> None:
    """`b2fs mount --config FILE` needs nothing else; what the mount runs with (b2fs status)
    follows command line > environment > file."""
    b2.upload("from-b2.txt", b"hello")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    cache = tmp_path / "cache"
    config = write(
        tmp_path / "photos.toml",
        f'source = "{BUCKET}"\nmountpoint = "{mountpoint}"\ncache_dir = "{cache}"\n'
        'cache_size = "64M"\ndir_timeout = 5\nattr_timeout = "3s"\nversions_dir = "none"\n',
    )
    env = {**mounter.env(), "B2FS_DIR_TIMEOUT": "7s", "B2FS_CACHE_SIZE": "96M"}
    mount = Mount(mountpoint, cache, env, BUCKET)
    mounter.mounts.append(mount)  # cleaned up with the others
    run_b2fs(["mount", "--config", str(config), "-o", "cache_size=128M"], env)
    assert is_mounted(mountpoint)
    assert (mountpoint / "from-b2.txt").read_bytes() == b"hello"
    status = json.loads(mount.b2fs("status", "--json", str(mountpoint)).stdout)
    options = status["options"]
    assert options["cache_size"] == 128 << 20  # -o
    assert options["dir_timeout"] == 7.0  # B2FS_DIR_TIMEOUT
    assert options["attr_timeout"] == 3.0 and options["versions_dir"] == "none"  # the file
    assert status["cache_dir"] == str(cache) and status["source"] == BUCKET
    mount.unmount()


def test_toml_datetime_for_version_at(tmp_path: Path) -> None:
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    config = write(tmp_path / "at.toml", "version_at = 2026-01-02T03:04:05Z\n")
    got = resolve(config_file=config, environ={}, cli_settings={}, cli_options=[])
    assert got.options.version_at == int(moment.timestamp() * 1000)


def test_the_shipped_example_configuration_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "systemd" / "example.toml"
    got = resolve(config_file=example, environ={}, cli_settings={}, cli_options=[])
    assert got.source == "my-bucket/photos" and got.mountpoint == Path("/srv/photos")
    assert got.options.allow_other and got.options.cache_size == 20 << 30
