//! The driver over scripted streams (`tokio::io::duplex`: bytes in, expected bytes out) and
//! over real loopback TCP.

use super::*;
use crate::fsm::FsmConfig;
use crate::wire::{error_code, Open, PathAttributes};
use std::net::Ipv4Addr;
use tokio::io::DuplexStream;

const OUR_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    /// The peer's end of the connection.
    peer: DuplexStream,
    rbuf: BytesMut,
    events: mpsc::Receiver<(ConnId, SessionEvent)>,
    control: SessionControl,
    task: tokio::task::JoinHandle<DownReason>,
    counters: Arc<MessageCounters>,
}

fn start(hold: u16, origin: ConnectionOrigin) -> Harness {
    start_with(hold, origin, 64)
}

/// `event_room`: how many session events the (test) speaker lets queue before the session
/// has to wait for it.
fn start_with(hold: u16, origin: ConnectionOrigin, event_room: usize) -> Harness {
    let (ours, peer) = tokio::io::duplex(64 * 1024);
    let (etx, events) = mpsc::channel(event_room);
    let (control, inputs) = session_channels();
    let counters = Arc::new(MessageCounters::default());
    let params = SessionParams {
        conn: 7,
        fsm: FsmConfig::new(65000, 65000, OUR_ID, hold),
        origin,
        local_addr: Some("127.0.0.1".parse().unwrap()),
        counters: counters.clone(),
        send_hold_min: SEND_HOLD_MIN,
    };
    let task = tokio::spawn(run_session(ours, params, etx, inputs));
    Harness {
        peer,
        rbuf: BytesMut::new(),
        events,
        control,
        task,
        counters,
    }
}

impl Harness {
    async fn write(&mut self, msg: &Message, ctx: &SessionContext) {
        let mut b = BytesMut::new();
        encode_message(msg, ctx, &mut b).unwrap();
        self.peer.write_all(&b).await.unwrap();
    }

    /// The next message the session sent, or `None` when it closed the connection.
    async fn read(&mut self) -> Option<Message> {
        let ctx = SessionContext {
            four_octet_as: true,
            ..Default::default()
        };
        loop {
            if let Some(len) = frame_length(&self.rbuf, &ctx).unwrap() {
                if self.rbuf.len() >= len {
                    let m = decode_message(&self.rbuf[..len], &ctx).unwrap();
                    self.rbuf.advance(len);
                    return Some(m);
                }
            }
            let n = tokio::time::timeout(WAIT, self.peer.read_buf(&mut self.rbuf))
                .await
                .expect("session sent nothing")
                .unwrap();
            if n == 0 {
                return None;
            }
        }
    }

    async fn event(&mut self) -> SessionEvent {
        let (conn, ev) = tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("no session event")
            .expect("event channel closed");
        assert_eq!(conn, 7);
        ev
    }

    /// Skips state changes.
    async fn next_non_state_event(&mut self) -> SessionEvent {
        loop {
            match self.event().await {
                SessionEvent::StateChanged(_) => continue,
                e => return e,
            }
        }
    }

    async fn expect_notification(&mut self) -> Notification {
        loop {
            match self.read().await {
                Some(Message::Notification(n)) => return n,
                Some(_) => continue,
                None => panic!("closed without NOTIFICATION"),
            }
        }
    }

    /// Runs the OPEN/KEEPALIVE exchange up to Established.
    async fn establish(&mut self, peer_hold: u16) -> Negotiated {
        let Some(Message::Open(open)) = self.read().await else {
            panic!("no OPEN")
        };
        assert_eq!((open.asn(), open.bgp_id), (65000, OUR_ID));
        let ctx = SessionContext::default();
        let theirs = Open::new(
            65000,
            peer_hold,
            PEER_ID,
            FsmConfig::default_capabilities(65000),
        );
        self.write(&Message::Open(theirs), &ctx).await;
        assert_eq!(self.read().await, Some(Message::Keepalive));
        self.write(&Message::Keepalive, &ctx).await;
        loop {
            match self.next_non_state_event().await {
                SessionEvent::OpenReceived(_) => continue,
                SessionEvent::Established {
                    negotiated,
                    local_addr,
                } => {
                    assert_eq!(local_addr, Some("127.0.0.1".parse().unwrap()));
                    return negotiated;
                }
                e => panic!("unexpected {e:?}"),
            }
        }
    }

    async fn closed(&mut self) -> DownReason {
        loop {
            if let SessionEvent::Closed(r) = self.event().await {
                return r;
            }
        }
    }
}

#[tokio::test]
async fn establishes_and_delivers_updates_then_closes_on_eof() {
    let mut h = start(90, ConnectionOrigin::Local);
    let n = h.establish(90).await;
    assert_eq!((n.hold_time, n.keepalive), (90, 30));
    assert!(n.context.four_octet_as);
    let update = Update {
        attributes: PathAttributes {
            origin: Some(crate::wire::Origin::Igp),
            as_path: Some(Default::default()),
            next_hop: Some("127.0.0.2".parse().unwrap()),
            local_pref: Some(100),
            ..Default::default()
        },
        nlri: vec!["192.168.7.0/26".parse().unwrap()],
        ..Default::default()
    };
    h.write(&Message::Update(update.clone()), &n.context).await;
    let SessionEvent::Update(got) = h.next_non_state_event().await else {
        panic!()
    };
    assert_eq!(got.nlri, update.nlri);
    assert_eq!(h.counters.received(MessageType::Update), 1);
    // The speaker's encoded UPDATEs go out as they are.
    let bytes =
        crate::wire::encode_updates(&[], &update.attributes, &update.nlri, &n.context).unwrap();
    h.control.updates.send(bytes).await.unwrap();
    assert!(matches!(h.read().await, Some(Message::Update(u)) if u.nlri == update.nlri));
    drop(h.peer);
    assert_eq!(h.task.await.unwrap(), DownReason::TcpFailed);
}

#[tokio::test]
async fn bad_peer_as_sends_notification_and_closes() {
    let mut h = start(90, ConnectionOrigin::Remote);
    assert!(matches!(h.read().await, Some(Message::Open(_))));
    let theirs = Open::new(65099, 90, PEER_ID, FsmConfig::default_capabilities(65099));
    h.write(&Message::Open(theirs), &SessionContext::default())
        .await;
    let n = h.expect_notification().await;
    assert_eq!(
        (n.code, n.subcode),
        (error_code::OPEN_MESSAGE, error_code::open::BAD_PEER_AS)
    );
    assert_eq!(&n.data[..], &65099u16.to_be_bytes());
    assert_eq!(
        h.read().await,
        None,
        "connection closed after the NOTIFICATION"
    );
    assert!(matches!(h.closed().await, DownReason::NotificationSent(_)));
}

#[tokio::test]
async fn refused_hold_time_one() {
    let mut h = start(90, ConnectionOrigin::Remote);
    h.read().await;
    let theirs = Open::new(65000, 1, PEER_ID, vec![]);
    h.write(&Message::Open(theirs), &SessionContext::default())
        .await;
    let n = h.expect_notification().await;
    assert_eq!(
        (n.code, n.subcode),
        (2, error_code::open::UNACCEPTABLE_HOLD_TIME)
    );
}

#[tokio::test]
async fn bad_marker_is_a_header_error() {
    let mut h = start(90, ConnectionOrigin::Local);
    h.read().await;
    let mut junk = vec![0u8; 19];
    junk[16..18].copy_from_slice(&19u16.to_be_bytes());
    junk[18] = 4;
    h.peer.write_all(&junk).await.unwrap();
    let n = h.expect_notification().await;
    assert_eq!(
        (n.code, n.subcode),
        (1, error_code::header::CONNECTION_NOT_SYNCHRONIZED)
    );
    assert_eq!(h.read().await, None);
}

#[tokio::test]
async fn keepalive_in_open_sent_is_an_fsm_error() {
    let mut h = start(90, ConnectionOrigin::Local);
    h.read().await;
    h.write(&Message::Keepalive, &SessionContext::default())
        .await;
    let n = h.expect_notification().await;
    assert_eq!(
        (n.code, n.subcode),
        (error_code::FSM, error_code::fsm::UNEXPECTED_IN_OPENSENT)
    );
}

#[tokio::test(start_paused = true)]
async fn keepalives_are_sent_and_hold_timer_expires() {
    let mut h = start(9, ConnectionOrigin::Local);
    let n = h.establish(90).await;
    assert_eq!((n.hold_time, n.keepalive), (9, 3));
    // We keep sending KEEPALIVEs every 3 s while the peer stays silent, and after 9 s of
    // silence the hold timer fires.
    let mut keepalives = 0;
    let n = loop {
        match h.read().await {
            Some(Message::Keepalive) => keepalives += 1,
            Some(Message::Notification(n)) => break n,
            other => panic!("{other:?}"),
        }
    };
    assert!(keepalives >= 2, "{keepalives}");
    assert_eq!((n.code, n.subcode), (error_code::HOLD_TIMER_EXPIRED, 0));
}

#[tokio::test(start_paused = true)]
async fn hold_time_zero_sends_no_keepalives_and_never_expires() {
    let mut h = start(0, ConnectionOrigin::Local);
    let n = h.establish(90).await;
    assert_eq!(n.hold_time, 0);
    tokio::time::sleep(Duration::from_secs(600)).await;
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(1), h.peer.read(&mut b)).await;
    assert!(r.is_err(), "nothing was sent in 10 minutes");
    assert!(!h.task.is_finished());
}

#[tokio::test]
async fn cease_command_sends_notification() {
    let mut h = start(90, ConnectionOrigin::Local);
    h.establish(90).await;
    h.control.stop(Stop::Cease(cease(
        crate::wire::error_code::cease::PEER_DECONFIGURED,
    )));
    let n = h.expect_notification().await;
    assert_eq!((n.code, n.subcode), (6, 3));
    assert_eq!(h.read().await, None);
}

#[tokio::test]
async fn two_drivers_establish_over_loopback_tcp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (etx, mut erx) = mpsc::channel(64);
    let mk = |conn, id, origin| SessionParams {
        conn,
        fsm: FsmConfig::new(65000, 65000, id, 90),
        origin,
        local_addr: None,
        counters: Arc::new(MessageCounters::default()),
        send_hold_min: SEND_HOLD_MIN,
    };
    let (_c1, r1) = session_channels();
    let (_c2, r2) = session_channels();
    let accept = tokio::spawn(async move { listener.accept().await.unwrap().0 });
    let client = connect(addr, None, WAIT, &Security::default())
        .await
        .unwrap();
    assert!(client.nodelay().unwrap());
    let server = accept.await.unwrap();
    prepare_accepted(&server, &Security::default()).unwrap();
    tokio::spawn(run_session(
        client,
        mk(1, OUR_ID, ConnectionOrigin::Local),
        etx.clone(),
        r1,
    ));
    tokio::spawn(run_session(
        server,
        mk(2, PEER_ID, ConnectionOrigin::Remote),
        etx,
        r2,
    ));
    let mut up = std::collections::HashSet::new();
    while up.len() < 2 {
        let (conn, ev) = tokio::time::timeout(WAIT, erx.recv())
            .await
            .unwrap()
            .unwrap();
        if let SessionEvent::Established { negotiated, .. } = ev {
            assert_eq!(
                negotiated.remote_id,
                if conn == 1 { PEER_ID } else { OUR_ID }
            );
            up.insert(conn);
        }
    }
}

#[tokio::test]
async fn collision_dump_sends_cease_collision() {
    let mut h = start(90, ConnectionOrigin::Remote);
    assert!(matches!(h.read().await, Some(Message::Open(_))));
    h.control.stop(Stop::CollisionDump);
    let n = h.expect_notification().await;
    assert_eq!((n.code, n.subcode), (6, 7));
    assert!(h.closed().await.is_collision());
}

/// RFC 4271 §4.4: a speaker that is busy (it does not take the session's events) for longer
/// than the hold time must not lose the session: the writer keeps sending KEEPALIVEs, and once
/// the speaker catches up the keepalives that arrived meanwhile are read before the hold timer
/// is looked at.
#[tokio::test(start_paused = true)]
async fn a_stalled_speaker_does_not_drop_the_session() {
    let mut h = start_with(9, ConnectionOrigin::Local, 4);
    let n = h.establish(9).await;
    assert_eq!((n.hold_time, n.keepalive), (9, 3));
    // Fill the event channel: the session now waits on the speaker with every UPDATE.
    let update = Update {
        attributes: PathAttributes {
            origin: Some(crate::wire::Origin::Igp),
            as_path: Some(Default::default()),
            next_hop: Some("127.0.0.2".parse().unwrap()),
            local_pref: Some(100),
            ..Default::default()
        },
        nlri: vec!["192.168.7.0/26".parse().unwrap()],
        ..Default::default()
    };
    for _ in 0..12 {
        h.write(&Message::Update(update.clone()), &n.context).await;
    }
    // 30 s (more than three hold times) of a stalled speaker: our KEEPALIVEs keep coming
    // every 3 s, and the peer keeps sending its own.
    let sent_before = h.counters.sent(MessageType::Keepalive);
    let start = tokio::time::Instant::now();
    let mut seen = 0;
    while start.elapsed() < Duration::from_secs(30) {
        match h.read().await {
            Some(Message::Keepalive) => seen += 1,
            other => panic!("expected KEEPALIVEs only, got {other:?}"),
        }
        h.write(&Message::Keepalive, &n.context).await;
    }
    assert!(seen >= 9, "{seen} KEEPALIVEs in 30 s");
    assert!(h.counters.sent(MessageType::Keepalive) - sent_before >= 9);
    // The speaker catches up: the session is still there, and it is Established.
    let mut updates = 0;
    while updates < 12 {
        match h.event().await {
            SessionEvent::Update(_) => updates += 1,
            SessionEvent::Closed(r) => panic!("session closed: {r}"),
            _ => {}
        }
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!h.task.is_finished());
    assert!(h.events.try_recv().is_err(), "no Closed after catching up");
}

/// An idle session's keepalives reuse the front of its small buffer (no new allocation, no
/// walk over fresh pages); a read that fills the buffer gives the next read a whole page, and
/// once the stream is read the buffer goes back to the small size.
#[test]
fn read_buffer_follows_what_arrives() {
    use bytes::{Buf, BufMut};
    let mut rbuf = BytesMut::with_capacity(READ_BUF_IDLE);
    let front = rbuf.as_ptr();
    for _ in 0..3 {
        rbuf.put_slice(&[0xff; 19]); // a KEEPALIVE
        rbuf.advance(19);
        size_read_buffer(&mut rbuf, false);
        assert_eq!(rbuf.as_ptr(), front, "reclaimed in place");
        assert_eq!(rbuf.capacity(), READ_BUF_IDLE);
    }
    // A table arrives: the read fills all that was free, and a message is left half read.
    rbuf.put_slice(&[0xff; READ_BUF_IDLE]);
    rbuf.advance(200);
    size_read_buffer(&mut rbuf, true);
    assert_eq!(
        rbuf.len(),
        READ_BUF_IDLE - 200,
        "the partial message is kept"
    );
    assert!(rbuf.capacity() - rbuf.len() >= READ_BUF);
    // The stream ends: a short read, all of it used.
    rbuf.advance(rbuf.len());
    size_read_buffer(&mut rbuf, false);
    assert_eq!(rbuf.capacity(), READ_BUF_IDLE);
    // A partial message after a short read waits for the rest in the buffer it is in.
    rbuf.put_slice(&[0xff; 30]);
    size_read_buffer(&mut rbuf, false);
    assert_eq!(rbuf.len(), 30);
}

/// One session task per peer: a 250-node mesh holds 249 of them, so its state stays small
/// (it was 3.1 KB while every FSM event and send future sat inline in it; now 1.3 KB).
#[test]
fn a_session_task_stays_small() {
    let (stream, _peer) = tokio::io::duplex(64);
    let (events, _rx) = mpsc::channel(4);
    let (_control, inputs) = session_channels();
    let params = SessionParams {
        conn: 1,
        fsm: FsmConfig::new(65000, 65000, OUR_ID, 90),
        origin: ConnectionOrigin::Local,
        local_addr: None,
        counters: Default::default(),
        send_hold_min: SEND_HOLD_MIN,
    };
    let task = run_session(stream, params, events, inputs);
    let size = std::mem::size_of_val(&task);
    assert!(size <= 1536, "a session task's state is {size} bytes");
}
