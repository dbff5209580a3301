from migtune.cli.main import main


def test_help_and_version(capsys):
    assert main(["--help"]) == 0
    assert "live migration" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert "migtune" in capsys.readouterr().out


def test_unknown_command_is_usage_error(capsys):
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("migtune: error: no-such-command: no such command")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
