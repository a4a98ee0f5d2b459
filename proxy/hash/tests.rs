//! Golden-vector tests: twemproxy's own unit vectors and the vectors recorded from
//! nutcracker 0.5.0 (`tests/data/twemproxy/hash_vectors.csv`).

use super::*;

const HASH_VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/twemproxy/hash_vectors.csv"
));

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

#[test]
fn names_round_trip() {
    for kind in HashKind::ALL {
        assert_eq!(HashKind::from_name(kind.name()), Some(kind));
        assert_eq!(kind.to_string(), kind.name());
    }
    assert_eq!(HashKind::from_name("MD5"), None);
    assert_eq!(HashKind::from_name("fnv1a64"), None);
    assert_eq!(HashKind::from_name(""), None);
    assert_eq!(HashKind::DEFAULT.name(), "fnv1a_64");
}

#[test]
fn hash_vectors_csv() {
    let mut lines = HASH_VECTORS.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert_eq!(header[0], "key_hex");
    let kinds: Vec<HashKind> = header[1..]
        .iter()
        .map(|n| HashKind::from_name(n).unwrap_or_else(|| panic!("unknown hash {n}")))
        .collect();
    assert_eq!(kinds.len(), 12, "every hash has a column");

    let mut rows = 0;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), 13, "row {line}");
        let key = unhex(cols[0]);
        for (kind, expected) in kinds.iter().zip(&cols[1..]) {
            let expected = u32::from_str_radix(expected, 16).expect("hex hash");
            assert_eq!(
                kind.hash(&key),
                expected,
                "{kind} of key {} ({} bytes)",
                cols[0],
                key.len()
            );
        }
        rows += 1;
    }
    assert_eq!(rows, 12);
}

#[test]
fn upstream_apple_vectors() {
    // twemproxy src/test_all.c
    let expected = [
        (HashKind::OneAtATime, 2_297_466_611u32),
        (HashKind::Md5, 3_195_025_439),
        (HashKind::Crc16, 3_662_830_516),
        (HashKind::Crc32, 10_542),
        (HashKind::Crc32a, 2_838_417_488),
        (HashKind::Fnv1_32, 67_176_023),
        (HashKind::Fnv1a_32, 280_767_167),
        (HashKind::Fnv1_64, 473_199_127),
        (HashKind::Fnv1a_64, 1_488_911_807),
        (HashKind::Hsieh, 3_738_850_110),
        (HashKind::Jenkins, 1_442_444_624),
        (HashKind::Murmur, 4_142_305_122),
    ];
    for (kind, value) in expected {
        assert_eq!(kind.hash(b"apple"), value, "{kind}(\"apple\")");
    }
}

#[test]
fn upstream_ketama_point_vectors() {
    // twemproxy src/test_all.c: ketama_hash("server1-8", alignment)
    let digest = md5_digest(b"server1-8");
    assert_eq!(digest_word(&digest, 0), 3_853_726_576);
    assert_eq!(digest_word(&digest, 3), 2_667_054_752);
}

#[test]
fn long_keys_do_not_panic() {
    let key = vec![0xa5u8; 100_000];
    for kind in HashKind::ALL {
        let _ = kind.hash(&key);
        for n in 0..40 {
            let _ = kind.hash(&key[..n]);
        }
    }
}
