"""Stand-in for the get-pip.py that ansible-test downloads to bootstrap pip into its venvs.

ansible-test fetches that script from its own CI host, which this network cannot reach. This shim
does the same job with what is here: the standard library's ensurepip puts the bundled pip into the
(empty) virtual environment, then that pip installs the exact pins ansible-test asked for from the
package index. sanity.sh copies it to the cache path ansible-test checks before downloading.
"""
import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel", "--no-pip"}


def main() -> int:
    ensurepip.bootstrap(upgrade=True)
    args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
    # ansible-test runs pip without the machine's pip configuration: trust the system CAs here.
    for bundle in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if bundle and os.path.isfile(bundle):
            args = ["--cert", bundle, *args]
            break
    return subprocess.call([sys.executable, "-m", "pip", "install", *args])


if __name__ == "__main__":
    sys.exit(main())
