from .cli import run_and_exit

if __name__ == "__main__":  # not when a worker process of `compare --jobs` imports it
    run_and_exit()
