//! Decoding and encoding UPDATEs full of /24 and /26 NLRI with realistic attributes (ORIGIN,
//! AS_PATH of 3 ASes, NEXT_HOP, MED, LOCAL_PREF, 2 communities). Throughput is in prefixes.

use bgp::wire::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipnet::Ipv4Net;
use std::hint::black_box;
use std::net::Ipv4Addr;

const CTX: SessionContext = SessionContext {
    four_octet_as: true,
    extended_message: false,
    peer_type: PeerType::Internal,
};

fn attrs() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath {
            segments: vec![AsPathSegment::Sequence(vec![64512, 65001, 4_200_000_000])],
        }),
        next_hop: Some(Ipv4Addr::new(172, 18, 0, 8)),
        med: Some(50),
        local_pref: Some(100),
        communities: vec![0xfc00_0064, 0xffff_ff01],
        ..Default::default()
    }
}

/// 100,000 prefixes: alternating /24s in 10.0.0.0/8 and /26s counting up from 192.168.0.0.
fn prefixes() -> Vec<Ipv4Net> {
    (0..100_000u32)
        .map(|i| {
            if i % 2 == 0 {
                Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + ((i / 2) << 8)), 24).unwrap()
            } else {
                Ipv4Net::new(
                    Ipv4Addr::from(0xc0a8_0000u32.wrapping_add((i / 2) << 6)),
                    26,
                )
                .unwrap()
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let nlri = prefixes();
    let a = attrs();
    let msgs = encode_updates(&[], &a, &nlri, &CTX).unwrap();
    let n = nlri.len() as u64;

    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(n));
    g.bench_function(
        format!("decode {} UPDATEs, {n} prefixes", msgs.len()),
        |b| {
            b.iter(|| {
                let mut count = 0;
                for m in &msgs {
                    if let Ok(Message::Update(u)) = decode_message(black_box(m), &CTX) {
                        count += u.nlri.len();
                    }
                }
                assert_eq!(count as u64, n);
                count
            })
        },
    );
    g.bench_function(format!("encode_updates {n} prefixes"), |b| {
        b.iter(|| {
            encode_updates(&[], black_box(&a), black_box(&nlri), &CTX)
                .unwrap()
                .len()
        })
    });
    g.bench_function(format!("frame_length over {} UPDATEs", msgs.len()), |b| {
        b.iter(|| {
            msgs.iter()
                .map(|m| frame_length(black_box(m), &CTX).unwrap().unwrap_or(0))
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
