//! The DPDK layer over a ring device (`net_ring0`: what a port sends comes back on its own
//! receive queue), so no network is needed: the EAL starts once without hugepages or PCI, a
//! port opens with its pool, a frame sent comes back, is answered in place (longer, within its
//! buffer) and sent again, and the port's counters and the error paths say what happened.
//! DPDK starts once per process, so this is one test.
#![cfg(all(feature = "dpdk", target_os = "linux"))]

use reflector_sys::dpdk::{Eal, Port, Sent};

#[test]
fn a_ring_port_takes_frames_back_in_place_and_counts_them() {
    let args: Vec<String> = [
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "-m",
        "128",
        "-l",
        "0",
        "--log-level=error",
        "--vdev=net_ring0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&args).unwrap_or_else(|e| panic!("{e}"));
    let again = Eal::init(&args).unwrap_err();
    assert!(again.reason.contains("already started"), "{again}");

    let ports = eal.ports();
    assert_eq!(ports, vec![(0, "net_ring0".to_string())]);
    assert_eq!(eal.port_by_name("net_ring0"), Ok(0));
    let missing = eal.port_by_name("net_nothing7").unwrap_err();
    assert_eq!(missing.call, "rte_eth_dev_get_port_by_name");

    let port = Port::start(&eal, 0, 1, 256, true, 4096).unwrap_or_else(|e| panic!("{e}"));
    let info = port.info().unwrap();
    assert_eq!(info.driver, "net_ring");
    assert!(info.max_rx_queues >= 1, "{info:?}");
    assert!(port.burst(1, 32).unwrap_err().reason.contains("no queue 1"));
    assert!(!port.send_copy(1, &[0; 60]), "no queue 1");

    let frame: Vec<u8> = (0..60u8).collect();
    assert!(port.send_copy(0, &frame));
    // The queue's bursts, owned by a worker thread.
    let mut burst = std::thread::spawn({
        let port = port.clone();
        move || {
            let mut burst = port.burst(0, 32).unwrap();
            assert_eq!(burst.receive(), 1);
            burst
        }
    })
    .join()
    .unwrap();
    {
        let (buf, len) = burst.frame(0).expect("one segment");
        assert_eq!((&buf[..len], len), (&frame[..], 60));
        assert!(buf.len() >= 60 + 1000, "room after the frame: {}", buf.len());
        // An answer in place, longer than the frame (as a short STAMP request's is).
        buf[..6].copy_from_slice(&[0xaa; 6]);
        buf[60..64].copy_from_slice(&[1, 2, 3, 4]);
    }
    assert!(burst.set_len(0, 64));
    assert!(!burst.set_len(0, 70_000), "past the buffer");
    assert!(!burst.set_len(1, 60), "no such frame");
    assert_eq!(burst.send(&[true], None), Sent { sent: 1, ..Sent::default() });
    assert!(burst.is_empty());
    assert_eq!(burst.receive(), 1);
    let (buf, len) = burst.frame(0).unwrap();
    assert_eq!(len, 64);
    assert_eq!((&buf[..6], &buf[6..60], &buf[60..64]), (&[0xaa; 6][..], &frame[6..60], &[1, 2, 3, 4][..]));
    // Not kept: freed, nothing sent.
    assert_eq!(burst.send(&[false], None), Sent::default());
    assert_eq!(burst.receive(), 0, "nothing came back");

    // Full bursts in, half answered: the rest freed (the pool would run dry otherwise).
    for _ in 0..1000 {
        for _ in 0..32 {
            assert!(port.send_copy(0, &frame));
        }
        assert_eq!(burst.receive(), 32);
        let keep: Vec<bool> = (0..32).map(|i| i % 2 == 0).collect();
        assert_eq!(burst.send(&keep, None), Sent { sent: 16, ..Sent::default() });
        assert_eq!(burst.receive(), 16);
    }
    // The 16 last in hand, sent once more.
    assert_eq!(burst.send(&[true; 16], None), Sent { sent: 16, ..Sent::default() });
    let stats = port.stats().unwrap();
    assert_eq!((stats.ipackets, stats.opackets), (2 + 48_000, 2 + 48_016), "{stats:?}");
    assert_eq!((stats.imissed, stats.rx_nombuf), (0, 0), "{stats:?}");
    // A second port added after the start (as the exception path's tap is): what a burst does
    // not answer goes out of it, and what comes in on it is forwarded out of the first.
    assert!(eal.add_vdev("net_nothing0", "").is_err(), "no such driver");
    let other_id = eal.add_vdev("net_ring1", "").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(eal.port_by_name("net_ring1"), Ok(other_id));
    let other = Port::start(&eal, other_id, 1, 256, false, 4096).unwrap_or_else(|e| panic!("{e}"));
    let mut exception = other.burst(0, 32).unwrap();
    assert_eq!(burst.receive(), 16, "the 16 sent last came back");
    let keep: Vec<bool> = (0..16).map(|i| i < 4).collect();
    assert_eq!(burst.send(&keep, Some(&exception)), Sent { sent: 4, passed: 12, ..Sent::default() });
    assert_eq!(exception.receive(), 12, "the unanswered went out of the other port");
    assert_eq!(exception.forward(&burst), (12, 0));
    assert_eq!(exception.receive(), 0);
    assert_eq!(burst.receive(), 16, "4 answered and 12 forwarded back");
    assert_eq!(burst.send(&[true; 16], None), Sent { sent: 16, ..Sent::default() });
    let stats = other.stats().unwrap();
    assert_eq!((stats.ipackets, stats.opackets), (12, 12), "{stats:?}");
    drop((exception, other));

    // The burst holds the port (and DPDK) after the handles go; dropping it closes the port.
    drop((port, eal));
    assert_eq!(burst.receive(), 16, "the 16 frames sent last came back");
    drop(burst);
}
