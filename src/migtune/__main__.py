from migtune.cli.main import run

run()
