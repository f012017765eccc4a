"""Check a NetNTLMv2 line in hashcat's mode-5600 format
(user::domain:server_challenge:ntproofstr:blob) against a known password,
computing it as MS-NLMP 3.3.2 defines it: NTOWFv2 = HMAC-MD5(MD4(UTF-16LE
password), UTF-16LE(UPPER(user) + domain)); NTProofStr = HMAC-MD5(NTOWFv2,
server_challenge + blob). Prints "match" or the expected NTProofStr.

usage: netntlmv2_check.py LINE PASSWORD
"""
import hashlib
import hmac
import sys

from Crypto.Hash import MD4

line, password = sys.argv[1], sys.argv[2]
user, empty, domain, challenge, proof, blob = line.split(":")
assert empty == "", line
nt_hash = MD4.new(password.encode("utf-16-le")).digest()
ntowf = hmac.new(nt_hash, (user.upper() + domain).encode("utf-16-le"), hashlib.md5).digest()
expected = hmac.new(ntowf, bytes.fromhex(challenge) + bytes.fromhex(blob), hashlib.md5).hexdigest()
print("match" if expected == proof.lower() else f"expected {expected}, line has {proof}")
