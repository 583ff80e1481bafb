//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// One's-complement sum of `data` folded to 16 bits, added to `initial` (not complemented).
///
/// Sums big-endian 32-bit words into a 64-bit accumulator and folds at the end: since 2^16 = 1 modulo
/// 0xffff, this is the same one's-complement sum as adding 16-bit words (RFC 1071, section 2(B)).
#[inline]
pub fn sum(data: &[u8], initial: u32) -> u32 {
    let mut acc = initial as u64;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as u64;
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += u32::from_be_bytes(tail) as u64;
    fold(acc)
}

/// Folds a one's-complement sum to 16 bits, without branches: the 32-bit halves added with their carry
/// brought around (2^32 = 1 modulo 0xffff), then the 16-bit halves likewise (an add and an add-with-carry
/// each). A sum that is not 0 never folds to 0, so the result is the one in 1..=0xffff of its class
/// modulo 0xffff (0 only for 0), exactly what folding 16-bit halves until it fits gives.
#[inline(always)]
pub fn fold(acc: u64) -> u32 {
    let (a, c) = (acc as u32).overflowing_add((acc >> 32) as u32);
    let a = a.wrapping_add(c as u32);
    let (b, c) = (a as u16).overflowing_add((a >> 16) as u16);
    b.wrapping_add(c as u16) as u32
}

/// The checksum field value for `data` (whose checksum field must be zero, or included to verify).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !(sum(data, 0) as u16)
}

/// Whether `data`, checksum field included, sums to all ones (a valid checksum).
#[inline]
pub fn verify(data: &[u8]) -> bool {
    sum(data, 0) == 0xffff
}

/// RFC 1624 eqn. 3: the new checksum after a 16-bit word changed from `old` to `new`.
#[inline]
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    adjust(csum, delta16(old, new))
}

/// The one's-complement change of the sum when a 16-bit word goes from `old` to `new`, to accumulate
/// over several fields (a u32 holds thousands of them) and apply once with [`adjust`].
#[inline(always)]
pub fn delta16(old: u16, new: u16) -> u32 {
    (!old) as u32 + new as u32
}

/// [`delta16`] for a 32-bit field (an IPv4 address).
#[inline(always)]
pub fn delta32(old: u32, new: u32) -> u32 {
    delta16((old >> 16) as u16, (new >> 16) as u16) + delta16(old as u16, new as u16)
}

/// The change of the sum when a 32-bit field (an IPv4 address, or two adjacent 16-bit fields as one
/// word) goes from `old` to `new`, taken as one 32-bit word: 2^32 = 1 modulo 0xffff, so 32-bit words sum
/// as their two halves do (as [`sum`] does). To accumulate in a u64 and apply once with [`adjust64`]; gives
/// the same checksum, bit for bit, as the 16-bit form ([`delta32`] and [`adjust`]), in fewer instructions.
#[inline(always)]
pub fn delta32w(old: u32, new: u32) -> u64 {
    (!old) as u64 + new as u64
}

/// [`adjust`] for a change accumulated in a u64 (any sum of fewer than 2^31 deltas).
#[inline(always)]
pub fn adjust64(csum: u16, delta: u64) -> u16 {
    !(fold((!csum) as u64 + delta) as u16)
}

/// RFC 1624 eqn. 3 for an accumulated change: the new checksum field.
#[inline(always)]
pub fn adjust(csum: u16, delta: u32) -> u16 {
    !(fold((!csum) as u64 + delta as u64) as u16)
}

/// RFC 1624 for a 32-bit field (an IPv4 address).
#[inline]
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    adjust(csum, delta32(old, new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // Example from RFC 1071 section 3: sum of 0001 f203 f4f5 f6f7 is ddf2 (folded).
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&d, 0), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12], 0), 0x1200);
    }

    /// The plain definition: 16-bit words, carries folded.
    fn reference(data: &[u8]) -> u32 {
        let mut acc: u64 = 0;
        for c in data.chunks(2) {
            acc += (u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])) as u64;
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u32
    }

    proptest! {
        #[test]
        fn fold_is_the_16_bit_fold_bit_for_bit(acc in any::<u64>(), small in 0u64..0x3_0000, edge in 0u8..5) {
            // Edge values too: zero, all ones, and multiples of 0xffff (where either zero could come out).
            let acc = match edge { 0 => acc, 1 => small, 2 => u64::MAX - small, 3 => (acc >> 16) * 0xffff, _ => 0 };
            let mut want = acc;
            while want > 0xffff {
                want = (want & 0xffff) + (want >> 16);
            }
            prop_assert_eq!(fold(acc) as u64, want, "{:#x}", acc);
        }

        #[test]
        fn wide_deltas_give_the_16_bit_form_bit_for_bit(c in any::<u16>(), w in proptest::collection::vec((any::<u32>(), any::<u32>()), 1..5), edge in 0u8..4) {
            // Edge values too: all ones and zero, where one's complement has its two zeros.
            let pick = |v: u32| match edge { 0 => v, 1 => 0xffff_ffff, 2 => 0, _ => v & 0xffff_0000 };
            let (mut narrow, mut wide) = (0u32, 0u64);
            for &(o, n) in &w {
                narrow += delta32(pick(o), n);
                wide += delta32w(pick(o), n);
            }
            prop_assert_eq!(adjust64(c, wide), adjust(c, narrow));
            let (o, n) = (pick(w[0].0), 0);
            prop_assert_eq!(adjust64(c, delta32w(o, n)), adjust(c, delta32(o, n)));
        }

        #[test]
        fn word_sum_equals_the_16_bit_definition(data in proptest::collection::vec(any::<u8>(), 0..200), init in 0u32..0x1_0000) {
            let want = { let mut a = reference(&data) as u64 + init as u64; while a > 0xffff { a = (a & 0xffff) + (a >> 16); } a as u32 };
            prop_assert_eq!(sum(&data, init), want);
        }

        #[test]
        fn incremental_equals_full(mut data in proptest::collection::vec(any::<u8>(), 4..64usize), idx in 0usize..30, new in any::<u16>()) {
            if data.len() % 2 == 1 { data.push(0); }
            let idx = (idx % (data.len() / 2 - 1)) * 2 + 2; // words after the checksum at 0..2
            data[0] = 0; data[1] = 0;
            let c = checksum(&data);
            let old = u16::from_be_bytes([data[idx], data[idx + 1]]);
            data[idx..idx + 2].copy_from_slice(&new.to_be_bytes());
            let full = checksum(&data);
            let inc = update16(c, old, new);
            // One's complement has two zeros; both encodings verify.
            data[0..2].copy_from_slice(&inc.to_be_bytes());
            prop_assert!(verify(&data), "incremental {inc:#x} full {full:#x}");
            prop_assert_eq!(adjust(c, delta16(old, new)), inc);
        }
    }
}
