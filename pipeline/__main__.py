"""`python -m pipeline` is the `pipeline` command (so `torchrun -m pipeline ...` works)."""

from pipeline.cli import main

if __name__ == "__main__":
    main()
