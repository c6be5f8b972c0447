from mailtide.cli import run

run()
