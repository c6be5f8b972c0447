from mailtide.cli import app

app(prog_name="mailtide")
