//! The UMAC implementation added to the vendored russh (for the
//! `umac-*@openssh.com` MACs every OpenSSH release offers), checked
//! against RFC 4418's test vectors (Appendix, with the published errata
//! for 'a' * 2^25) and against more vectors at the chunk boundaries of
//! its layers (1024-byte NH chunks, the POLY64/POLY128 switch) and for
//! every nonce length.

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

const KEY: &[u8; 16] = b"abcdefghijklmnop";

fn check(nonce: &[u8], message: &[u8], tags: [&str; 3]) {
    for (len, want) in [4, 8, 16].into_iter().zip(tags) {
        let got = russh::mac::umac_tag(KEY, len, nonce, message);
        assert_eq!(got, hex(want), "UMAC-{} of {} bytes, nonce {:?}", len * 8, message.len(), nonce);
    }
}

fn repeat(pattern: &[u8], len: usize) -> Vec<u8> {
    pattern.iter().copied().cycle().take(len).collect()
}

#[test]
fn rfc4418_appendix_vectors() {
    let n = b"bcdefghi";
    check(n, b"", ["113145FB", "6E155FAD26900BE1", "32FEDB100C79AD58F07FF7643CC60465"]);
    check(n, &repeat(b"a", 3), ["3B91D102", "44B5CB542F220104", "185E4FE905CBA7BD85E4C2DC3D117D8D"]);
    check(n, &repeat(b"a", 1 << 10), ["599B350B", "26BF2F5D60118BD9", "7A54ABE04AF82D60FB298C3CBD195BCB"]);
    check(n, &repeat(b"a", 1 << 15), ["58DCF532", "27F8EF643B0D118D", "7B136BD911E4B734286EF2BE501F2C3C"]);
    check(n, &repeat(b"a", 1 << 20), ["DB6364D1", "A4477E87E9F55853", "F8ACFA3AC31CFEEA047F7B115B03BEF5"]);
    check(n, b"abc", ["ABF3A3A0", "D4D7B9F6BD4FBFCF", "883C3D4B97A61976FFCF232308CBA5A5"]);
    check(n, &repeat(b"abc", 1500), ["ABEB3C8B", "D4CF26DDEFD5C01A", "8824A260C53C66A36C9260A62CB83AA1"]);
}

/// Past 16 MiB of message the L2 hash switches to POLY128 (RFC 4418
/// errata value for 'a' * 2^25, and the boundary itself).
#[test]
fn rfc4418_vector_needing_poly128() {
    check(b"bcdefghi", &repeat(b"a", 1 << 25), ["85EE5CAE", "FACA46F856E9B45F", "A621C2457C0012E64F3FDAE9E7E1870C"]);
    let d = b"defdefdefdefdef";
    check(b"bcdefgh", &repeat(d, 16777216), ["42d8562a", "42d8562a224a9e9a", "42d8562a224a9e9a75c2f85d39462d07"]);
    check(b"bcdefghi", &repeat(d, 16777217), ["486b138d", "374f09dbb0b84b88", "6ba48d669a51ed3195ebc2aa562ee71b"]);
    check(b"bcdefghijk", &repeat(d, 16778240), ["b9fc4f81", "e1974b26fb35f2c6", "2e93c8ca83b97a6b1a21082e2a4c540d"]);
    check(b"bcdefghijkl", &repeat(d, 16778241), ["ffced8f2", "ffced8f2494d85bf", "ffced8f2494d85bf0cb39408ddfe0295"]);
}

#[test]
fn nonce_lengths_and_chunk_boundaries() {
    let d = b"defdefdefdefdef";
    let cases: &[(&[u8], usize, [&str; 3])] = &[
        (b"b", 0, ["3a58486b", "9e38f67da91a08d9", "9e38f67da91a08d9c980f4db4089c877"]),
        (b"bc", 1, ["d86b1512", "fb0e207971b8e66a", "ef406c2ec70d0222f59e860eabb79ed0"]),
        (b"bcd", 2, ["1ae6e02d", "1ae6e02d73aa9ab2", "1ae6e02d73aa9ab2a27fb89e014dc07b"]),
        (b"bcde", 3, ["e8c1eb59", "c81cf22342e84302", "82626d0d575e01038e5e2cc6408216f5"]),
        (b"bcdef", 4, ["8950f0d3", "aba003e7bd673cc3", "aba003e7bd673cc368ba8513cecf2e7c"]),
        (b"bcdefg", 1020, ["7412167c", "f98828a161bb4ae3", "d8b4811f747d588d7a913360960de7cf"]),
        (b"bcdefgh", 1021, ["2d54936b", "2d54936be5bff72d", "2d54936be5bff72d2e1052361163b474"]),
        (b"bcdefghi", 1022, ["53ca8dd2", "2cee9784556387b3", "700513397f8a210a98938d3e7ac3bd88"]),
        (b"bcdefghij", 1023, ["26cc58df", "24ac4284ca371f42", "24ac4284ca371f4280f60bd274633d67"]),
        (b"bcdefghijk", 1024, ["3cada45a", "64c6a0fd14615a76", "abc223116cedd2db5af365e641a97539"]),
        (b"bcdefghijkl", 1025, ["93251e18", "93251e18e56bbdc4", "93251e18e56bbdc457de556f95c59931"]),
        (b"bcdefghijklm", 1026, ["24a4c3ab", "5d98bd8dfaf16352", "c1298672e52386753383a15ed58c0e42"]),
        (b"bcdefghijklmn", 1027, ["e7e98945", "5b0557c9fdcf661b", "5b0557c9fdcf661b1758efc603516ebe"]),
        (b"bcdefghijklmno", 2046, ["e12ddc9f", "65e85d47447c2277", "16bb5183017826ed47c9995c1e5834f3"]),
        (b"bcdefghijklmnop", 2047, ["34d723a6", "34d723a6cb1676d3", "34d723a6cb1676d3547a5064dc5b0a37"]),
        (b"bcdefghijklmnopq", 2048, ["21fd8802", "3968d5d0af147884", "84565620def1e3a614d274e87626f215"]),
        (b"b", 2049, ["097e5abd", "ad1ee4ab606061c5", "ad1ee4ab606061c55e0d2ecfee59940a"]),
        (b"bc", 2050, ["a03a7fe9", "835f4a8242100055", "971106d5f4a5e41dce40a91704cfe1f3"]),
    ];
    for (nonce, len, tags) in cases {
        check(nonce, &repeat(d, *len), *tags);
    }
}
