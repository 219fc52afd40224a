"""Resolve handles, DIDs or at:// URIs: DID, verified handle, PDS and signing key.

    python examples/resolve.py atproto.com bsky.app         # the live network
    python examples/resolve.py alice.test --plc-url http://localhost:PORT \\
        --handle-resolver http://localhost:PDS_PORT          # a sandbox (`atrepo sandbox`)
"""

import argparse
import sys

import atrepo

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("names", nargs="+", help="handles, DIDs or at:// URIs")
parser.add_argument("--plc-url", default="https://plc.directory", help="the PLC directory")
parser.add_argument("--handle-resolver", default=None,
                    help="XRPC service asked when DNS and HTTPS do not resolve a handle "
                         "(for a sandbox: its PDS URL)")
parser.add_argument("--cache-dir", default=None, help="atrepo's cache (default: user cache)")
args = parser.parse_args()

failed = 0
with atrepo.Client(plc_url=args.plc_url, handle_resolver=args.handle_resolver,
                   cache_dir=args.cache_dir) as client:
    for name in args.names:
        try:
            ident = client.resolve(name)
        except atrepo.AtrepoError as exc:
            print(f"{name}: does not resolve: {exc}")
            failed += 1
            continue
        verified = "verified" if ident.handle_verified else "not verified"
        print(name)
        print(f"  did          {ident.did}")
        print(f"  handle       {ident.handle} ({verified})")
        print(f"  pds          {ident.pds}")
        print(f"  signing key  {ident.signing_key}")
sys.exit(1 if failed else 0)
