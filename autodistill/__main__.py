from autodistill.main import run

run()
