//! Mosquitto and a minimal MQTT 3.1.1 client of it: CONNECT, SUBSCRIBE, PUBLISH at QoS 0
//! or 1, PUBACK, PINGREQ, and the decoding of what a broker sends a subscriber.
//!
//! User `17` is client `u17`, subscribed to its own topic `u/17` and, in a run of the
//! group workload, to the group topic `g`. A direct message is a PUBLISH to the
//! recipient's topic, a group message a PUBLISH to `g`. MQTT 3.1.1 has no "no local"
//! subscription option (MQTT 5 does), so the sender of a group message receives its own
//! copy; the payload names its sender ([`wire::sender_of`](crate::wire::sender_of)), so
//! the workloads can tell.
//!
//! This client never speaks MQTT 5, QoS 2, retained messages or wills: nothing the
//! workloads need.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use anyhow::{Context, bail, ensure};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use tokio::io::AsyncWriteExt;

use super::{Launch, read_more};
use crate::wire::{Event, Protocol, Tls, Workload};

/// MQTT control packet types (the high nibble of the first byte).
mod kind {
    /// Client to broker: open a session.
    pub(super) const CONNECT: u8 = 1;
    /// Broker to client: the session is open (or refused).
    pub(super) const CONNACK: u8 = 2;
    /// A message, either way.
    pub(super) const PUBLISH: u8 = 3;
    /// Acknowledges a QoS 1 PUBLISH, either way.
    pub(super) const PUBACK: u8 = 4;
    /// Client to broker: subscribe to topic filters.
    pub(super) const SUBSCRIBE: u8 = 8;
    /// Broker to client: the granted QoS of each filter.
    pub(super) const SUBACK: u8 = 9;
    /// Broker to client: the answer to an UNSUBSCRIBE (never sent by this client).
    pub(super) const UNSUBACK: u8 = 11;
    /// Client to broker: are you there?
    pub(super) const PINGREQ: u8 = 12;
    /// Broker to client: yes.
    pub(super) const PINGRESP: u8 = 13;
    /// Either way: closing the connection (MQTT 5 brokers may send it).
    pub(super) const DISCONNECT: u8 = 14;
}

/// The largest remaining length MQTT can encode (four varint bytes).
const MAX_REMAINING: usize = 268_435_455;

/// The packet id of the login's SUBSCRIBE (any non-zero id would do).
const SUBSCRIBE_ID: u16 = 1;

/// The topic every user subscribes to for group messages.
const GROUP_TOPIC: &str = "g";

/// Mosquitto's configuration for one run. Written out in full so that nothing of the
/// system's `/etc/mosquitto` applies, and so the report can say what was measured.
pub(super) fn setup(
    dir: &Path,
    addr: SocketAddr,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<Launch> {
    let config = format!(
        "# vcom-bench peer: written per run, removed with its directory.\n\
         # Stay root: the certificate and key are in a root-only temporary directory.\n\
         user root\n\
         per_listener_settings false\n\
         allow_anonymous true\n\
         # In memory only: offline QoS 1 messages are lost on restart, nothing is fsynced.\n\
         persistence false\n\
         # No per-client limits: every QoS 1 message in flight at once, queues unbounded.\n\
         max_inflight_messages 0\n\
         max_queued_messages 0\n\
         max_queued_bytes 0\n\
         # The bench's clients and the vCom server disable Nagle too.\n\
         set_tcp_nodelay true\n\
         # Errors only: a log line per connection would cost the broker under test.\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         connection_messages false\n\
         listener {port} {ip}\n\
         certfile {cert}\n\
         keyfile {key}\n\
         tls_version tlsv1.3\n",
        port = addr.port(),
        ip = addr.ip(),
        cert = cert.display(),
        key = key.display(),
    );
    let path = dir.join("mosquitto.conf");
    std::fs::write(&path, config).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Launch {
        program: "/usr/sbin/mosquitto",
        args: vec!["-c".into(), path.into_os_string()],
    })
}

/// The quality of service every PUBLISH and subscription of a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Qos {
    /// At most once: no acknowledgement, nothing queued for an offline subscriber.
    AtMostOnce,
    /// At least once: a PUBACK each way per message; queued for offline persistent
    /// sessions.
    AtLeastOnce,
}

impl Qos {
    /// The QoS number on the wire.
    fn level(self) -> u8 {
        match self {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
        }
    }
}

/// The MQTT client of one Mosquitto run.
pub(crate) struct Mqtt {
    /// Where the broker listens.
    addr: SocketAddr,
    /// QoS of every PUBLISH and subscription.
    qos: Qos,
    /// Whether users subscribe to the group topic at login (see [`super::Joins`]).
    joins: super::Joins,
    /// Trusts the broker's per-run self-signed certificate.
    tls: Arc<rustls::ClientConfig>,
    /// Packet ids of QoS 1 PUBLISHes. Mosquitto acknowledges a QoS 1 PUBLISH at once
    /// and keeps no per-id state for it, so ids only need to be non-zero; one counter
    /// for every connection spares the workloads any per-connection state.
    next_id: AtomicU16,
}

impl Mqtt {
    /// A client of the broker at `addr`, publishing and subscribing at `qos`.
    pub(crate) fn new(addr: SocketAddr, qos: Qos, joins: super::Joins) -> anyhow::Result<Mqtt> {
        Ok(Mqtt {
            addr,
            qos,
            joins,
            tls: crate::wire::trust_any_tls()?,
            next_id: AtomicU16::new(1),
        })
    }

    /// The next non-zero packet id.
    fn packet_id(&self) -> u16 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// Appends a PUBLISH of `payload` to `topic` at this run's QoS.
    fn publish_to(&self, topic: &str, payload: &[u8], out: &mut BytesMut) {
        let id = match self.qos {
            Qos::AtMostOnce => None,
            Qos::AtLeastOnce => Some(self.packet_id()),
        };
        put_publish(topic, id, payload, out);
    }
}

/// The topic user `user` receives its direct messages on.
fn user_topic(user: usize) -> String {
    format!("u/{user}")
}

impl Protocol for Mqtt {
    fn name(&self) -> String {
        match self.qos {
            Qos::AtMostOnce => "mosquitto-qos0".into(),
            Qos::AtLeastOnce => "mosquitto-qos1".into(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn tls(&self, _user: usize) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        Ok(self.tls.clone())
    }

    fn login<'a>(
        &'a self,
        user: usize,
        persistent: bool,
        stream: &'a mut Tls,
        buf: &'a mut BytesMut,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let topic = user_topic(user);
            let qos = self.qos.level();
            let filters: &[(&str, u8)] = match self.joins {
                super::Joins::Group => &[(&topic, qos), (GROUP_TOPIC, qos)],
                super::Joins::Nothing => &[(&topic, qos)],
            };
            let mut subscribe = BytesMut::new();
            put_subscribe(SUBSCRIBE_ID, filters, &mut subscribe);

            // A persistent session (clean session off, fixed client id) is what
            // Mosquitto queues QoS 1 messages for while its client is away. A clean
            // session has nothing queued: its CONNECT and SUBSCRIBE go in one write
            // (MQTT lets a client send before the CONNACK; the broker handles them in
            // order).
            let mut out = BytesMut::new();
            put_connect(&format!("u{user}"), !persistent, &mut out);
            if !persistent {
                out.extend_from_slice(&subscribe);
            }
            write(stream, &out).await?;
            let session_present = loop {
                let Some((header, body)) = split_packet(buf)? else {
                    read_more(stream, buf).await?;
                    continue;
                };
                ensure!(
                    header >> 4 == kind::CONNACK,
                    "MQTT packet type {} before the CONNACK",
                    header >> 4
                );
                break check_connack(&body)?;
            };
            if persistent {
                if session_present {
                    // The broker kept the subscriptions, and sends what it queued right
                    // after the CONNACK: that is for `decode`, and may take long (the
                    // backlog workload), so the login ends here.
                    return Ok(());
                }
                write(stream, &subscribe).await?;
            }

            // Anything but the SUBACK stays in `buf` for `decode`, in order.
            let mut kept = BytesMut::new();
            loop {
                let Some((header, body)) = split_packet(buf)? else {
                    read_more(stream, buf).await?;
                    continue;
                };
                if header >> 4 == kind::SUBACK {
                    check_suback(&body, filters.len())?;
                    break;
                }
                put_raw(header, &body, &mut kept);
            }
            let rest = buf.split();
            buf.extend_from_slice(&kept);
            buf.extend_from_slice(&rest);
            Ok(())
        })
    }

    fn direct(&self, _from: usize, to: usize, payload: &[u8], out: &mut BytesMut) {
        self.publish_to(&user_topic(to), payload, out);
    }

    fn group(&self, _from: usize, payload: &[u8], out: &mut BytesMut) {
        self.publish_to(GROUP_TOPIC, payload, out);
    }

    fn barrier(&self, out: &mut BytesMut) {
        // The broker handles a connection's packets in order, so the PINGRESP comes
        // after every PUBLISH sent before the PINGREQ has been routed.
        out.put_slice(&[kind::PINGREQ << 4, 0]);
    }

    fn decode(&self, buf: &mut BytesMut, replies: &mut BytesMut) -> anyhow::Result<Option<Event>> {
        let Some((header, body)) = split_packet(buf)? else {
            return Ok(None);
        };
        let event = match header >> 4 {
            kind::PUBLISH => {
                let publish = parse_publish(header, body)?;
                if let Some(id) = publish.id {
                    put_puback(id, replies);
                }
                Event::Message(publish.payload)
            }
            kind::PINGRESP => Event::Barrier,
            kind::CONNACK | kind::PUBACK | kind::SUBACK | kind::UNSUBACK => Event::Other,
            kind::DISCONNECT => bail!("the MQTT broker sent DISCONNECT"),
            other => bail!("unexpected MQTT packet type {other} from the broker"),
        };
        Ok(Some(event))
    }

    fn supports(&self, workload: Workload) -> Result<(), String> {
        match (workload, self.qos) {
            (Workload::Group, _) => self.joins.group_ready(),
            (Workload::Connections | Workload::Direct, _) => Ok(()),
            (Workload::Backlog, Qos::AtLeastOnce) => Ok(()),
            (Workload::Backlog, Qos::AtMostOnce) => Err("QoS 0 messages to an offline \
                subscriber are dropped: Mosquitto queues only QoS 1 and 2 for persistent \
                sessions (queue_qos0_messages is a non-standard option, left off)"
                .into()),
            (Workload::Files, _) => Err("MQTT has no file relay: chunks would be plain \
                PUBLISHes, which the direct workload already measures"
                .into()),
        }
    }

    fn settings(&self) -> String {
        let qos = match self.qos {
            Qos::AtMostOnce => {
                "QoS 0 (at most once, no acknowledgement; nothing kept for offline users)"
            }
            Qos::AtLeastOnce => {
                "QoS 1 (at least once, a PUBACK each way per message); offline messages of \
                 persistent sessions (clean session off) queued in memory only"
            }
        };
        format!(
            "MQTT 3.1.1 over TLS 1.3, Mosquitto 2.0, {qos}; persistence false (nothing on \
             disk, no fsync); no per-client limits (max_inflight_messages, \
             max_queued_messages, max_queued_bytes 0 = unlimited); set_tcp_nodelay true; the \
             group is topic `g`, subscribed at login in group runs only, whose sender also \
             gets its own copy (3.1.1 has no no-local)"
        )
    }
}

/// Writes and flushes `bytes` on a login's stream.
async fn write(stream: &mut Tls, bytes: &[u8]) -> anyhow::Result<()> {
    stream
        .write_all(bytes)
        .await
        .context("cannot write to the MQTT broker")?;
    stream
        .flush()
        .await
        .context("cannot write to the MQTT broker")
}

/// Appends MQTT's variable-length "remaining length": 7 bits a byte, low bits first.
///
/// Lengths above [`MAX_REMAINING`] cannot be encoded; callers build packets far smaller.
fn put_remaining_length(mut len: usize, out: &mut BytesMut) {
    debug_assert!(len <= MAX_REMAINING);
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        if len == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

/// Appends an MQTT string: a two-byte length, then the bytes.
fn put_str(s: &[u8], out: &mut BytesMut) {
    // Topics and client ids here are a few bytes; longer ones are cut rather than
    // wrapping the length.
    let s = &s[..s.len().min(usize::from(u16::MAX))];
    out.put_u16(s.len() as u16);
    out.put_slice(s);
}

/// Appends a CONNECT for `client_id` (MQTT 3.1.1, no keep-alive, no will, no password).
fn put_connect(client_id: &str, clean_session: bool, out: &mut BytesMut) {
    let id = client_id.as_bytes();
    // Protocol name (6), level (1), flags (1), keep-alive (2), then the client id.
    out.put_u8(kind::CONNECT << 4);
    put_remaining_length(10 + 2 + id.len(), out);
    put_str(b"MQTT", out);
    out.put_u8(4);
    out.put_u8(if clean_session { 0x02 } else { 0 });
    // Keep-alive 0: idle clients of the connections workload are not timed out.
    out.put_u16(0);
    put_str(id, out);
}

/// Appends a SUBSCRIBE of `topics` (filter, requested QoS).
fn put_subscribe(id: u16, topics: &[(&str, u8)], out: &mut BytesMut) {
    let len = 2 + topics.iter().map(|(t, _)| 2 + t.len() + 1).sum::<usize>();
    // Fixed header flags 0b0010 are mandatory for SUBSCRIBE.
    out.put_u8((kind::SUBSCRIBE << 4) | 0x02);
    put_remaining_length(len, out);
    out.put_u16(id);
    for (topic, qos) in topics {
        put_str(topic.as_bytes(), out);
        out.put_u8(*qos);
    }
}

/// Appends a PUBLISH: QoS 1 with a packet id, QoS 0 without.
fn put_publish(topic: &str, id: Option<u16>, payload: &[u8], out: &mut BytesMut) {
    let qos_flags = if id.is_some() { 0x02 } else { 0 };
    out.put_u8((kind::PUBLISH << 4) | qos_flags);
    let id_len = if id.is_some() { 2 } else { 0 };
    put_remaining_length(2 + topic.len() + id_len + payload.len(), out);
    put_str(topic.as_bytes(), out);
    if let Some(id) = id {
        out.put_u16(id);
    }
    out.put_slice(payload);
}

/// Appends the PUBACK of QoS 1 PUBLISH `id`.
fn put_puback(id: u16, out: &mut BytesMut) {
    out.put_u8(kind::PUBACK << 4);
    out.put_u8(2);
    out.put_u16(id);
}

/// Appends a packet split off by [`split_packet`] back as it was on the wire.
fn put_raw(header: u8, body: &[u8], out: &mut BytesMut) {
    out.put_u8(header);
    put_remaining_length(body.len(), out);
    out.put_slice(body);
}

/// Takes the first whole packet off `buf`: its first byte and its body (everything
/// after the remaining length). `None` until the whole packet is in `buf`.
fn split_packet(buf: &mut BytesMut) -> anyhow::Result<Option<(u8, Bytes)>> {
    let Some(&header) = buf.first() else {
        return Ok(None);
    };
    let mut len = 0usize;
    let mut header_len = 1;
    loop {
        if header_len > 4 {
            bail!("malformed MQTT remaining length (more than 4 bytes)");
        }
        let Some(&byte) = buf.get(header_len) else {
            return Ok(None);
        };
        len |= usize::from(byte & 0x7f) << (7 * (header_len - 1));
        header_len += 1;
        if byte & 0x80 == 0 {
            break;
        }
    }
    if buf.len() < header_len + len {
        return Ok(None);
    }
    buf.advance(header_len);
    Ok(Some((header, buf.split_to(len).freeze())))
}

/// A PUBLISH from the broker.
#[derive(Debug, PartialEq, Eq)]
struct Publish {
    /// The topic it was published to.
    topic: Bytes,
    /// Its packet id, if QoS 1 (the PUBACK must carry it).
    id: Option<u16>,
    /// The application message.
    payload: Bytes,
}

/// Parses a PUBLISH's body (`header` is its first byte, which holds the QoS).
fn parse_publish(header: u8, mut body: Bytes) -> anyhow::Result<Publish> {
    ensure!(body.len() >= 2, "truncated MQTT PUBLISH");
    let topic_len = usize::from(body.get_u16());
    ensure!(body.len() >= topic_len, "truncated MQTT PUBLISH topic");
    let topic = body.split_to(topic_len);
    let id = match (header >> 1) & 0x03 {
        0 => None,
        1 => {
            ensure!(body.len() >= 2, "truncated MQTT PUBLISH packet id");
            Some(body.get_u16())
        }
        // This client never subscribes above QoS 1, so the broker never sends QoS 2.
        qos => bail!("unexpected MQTT PUBLISH at QoS {qos}"),
    };
    Ok(Publish {
        topic,
        id,
        payload: body,
    })
}

/// Checks a CONNACK's return code; whether the broker kept a session for the client.
fn check_connack(body: &[u8]) -> anyhow::Result<bool> {
    let [flags, code] = body else {
        bail!("malformed MQTT CONNACK ({} bytes)", body.len());
    };
    let reason = match code {
        0 => return Ok(flags & 0x01 != 0),
        1 => "unacceptable protocol version",
        2 => "identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "unknown return code",
    };
    bail!("the MQTT broker refused the connection: {reason} ({code})")
}

/// Checks that a SUBACK granted each of the `filters` topic filters.
fn check_suback(body: &[u8], filters: usize) -> anyhow::Result<()> {
    let codes = body.get(2..).unwrap_or_default();
    ensure!(
        codes.len() == filters,
        "MQTT SUBACK for {} filters, {filters} asked",
        codes.len()
    );
    ensure!(
        codes.iter().all(|&code| code <= 2),
        "the MQTT broker refused a subscription (SUBACK {codes:?})"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A client of a broker that is never contacted.
    fn mqtt(qos: Qos) -> Mqtt {
        Mqtt::new(
            SocketAddr::from(([127, 0, 0, 1], 1)),
            qos,
            super::super::Joins::Group,
        )
        .unwrap()
    }

    /// The remaining-length bytes of `len`.
    fn remaining(len: usize) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_remaining_length(len, &mut out);
        out.to_vec()
    }

    #[test]
    fn remaining_length_is_a_little_endian_base_128_varint() {
        assert_eq!(remaining(0), [0x00]);
        assert_eq!(remaining(127), [0x7f]);
        assert_eq!(remaining(128), [0x80, 0x01]);
        assert_eq!(remaining(16_383), [0xff, 0x7f]);
        assert_eq!(remaining(16_384), [0x80, 0x80, 0x01]);
        assert_eq!(remaining(MAX_REMAINING), [0xff, 0xff, 0xff, 0x7f]);
    }

    #[test]
    fn connect_is_mqtt_3_1_1_with_the_client_id() {
        let mut out = BytesMut::new();
        put_connect("u17", true, &mut out);
        assert_eq!(
            out.as_ref(),
            [
                0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 3, b'u', b'1', b'7'
            ]
        );
        let mut out = BytesMut::new();
        put_connect("u1", false, &mut out);
        assert_eq!(out[9], 0, "a persistent session clears clean session");
    }

    #[test]
    fn subscribe_lists_each_filter_with_its_qos() {
        let mut out = BytesMut::new();
        put_subscribe(1, &[("u/3", 1), ("g", 1)], &mut out);
        assert_eq!(
            out.as_ref(),
            [0x82, 12, 0, 1, 0, 3, b'u', b'/', b'3', 1, 0, 1, b'g', 1]
        );
    }

    #[test]
    fn publish_carries_a_packet_id_only_at_qos_1() {
        let mut out = BytesMut::new();
        put_publish("g", None, b"hi", &mut out);
        assert_eq!(out.as_ref(), [0x30, 5, 0, 1, b'g', b'h', b'i']);

        let mut out = BytesMut::new();
        put_publish("g", Some(0x0102), b"hi", &mut out);
        assert_eq!(out.as_ref(), [0x32, 7, 0, 1, b'g', 1, 2, b'h', b'i']);
    }

    #[test]
    fn a_100_byte_payload_round_trips_through_decode() {
        let payload = crate::wire::payload(123, 4, 5);
        for qos in [Qos::AtMostOnce, Qos::AtLeastOnce] {
            let client = mqtt(qos);
            let mut wire = BytesMut::new();
            client.direct(4, 17, &payload, &mut wire);
            let mut replies = BytesMut::new();
            let event = client.decode(&mut wire, &mut replies).unwrap();
            assert_eq!(
                event,
                Some(Event::Message(Bytes::copy_from_slice(&payload)))
            );
            assert!(wire.is_empty());
            match qos {
                Qos::AtMostOnce => assert!(replies.is_empty()),
                // The PUBACK carries the PUBLISH's id (the counter starts at 1).
                Qos::AtLeastOnce => assert_eq!(replies.as_ref(), [0x40, 2, 0, 1]),
            }
        }
    }

    #[test]
    fn publish_parsing_reads_topic_id_and_payload() {
        let mut out = BytesMut::new();
        put_publish("u/9", Some(7), b"body", &mut out);
        let (header, body) = split_packet(&mut out).unwrap().unwrap();
        let publish = parse_publish(header, body).unwrap();
        assert_eq!(
            publish,
            Publish {
                topic: Bytes::from_static(b"u/9"),
                id: Some(7),
                payload: Bytes::from_static(b"body"),
            }
        );
        assert!(parse_publish(0x30, Bytes::from_static(&[0, 5, b'g'])).is_err());
        assert!(parse_publish(0x32, Bytes::from_static(&[0, 1, b'g', 0])).is_err());
        assert!(parse_publish(0x34, Bytes::from_static(&[0, 1, b'g', 0, 1])).is_err());
    }

    #[test]
    fn decode_waits_for_a_whole_packet_split_anywhere() {
        let client = mqtt(Qos::AtLeastOnce);
        let mut stream = BytesMut::new();
        // A payload long enough for a two-byte remaining length.
        put_publish("g", Some(9), &[b'x'; 200], &mut stream);
        stream.put_slice(&[kind::PINGRESP << 4, 0]);
        stream.put_slice(&[kind::PUBACK << 4, 2, 0, 3]);
        stream.put_slice(&[kind::SUBACK << 4, 4, 0, 1, 1, 1]);
        let whole = stream.freeze();

        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            let mut replies = BytesMut::new();
            let mut events = Vec::new();
            while let Some(event) = client.decode(&mut buf, &mut replies).unwrap() {
                events.push(event);
            }
            buf.put_slice(&whole[cut..]);
            while let Some(event) = client.decode(&mut buf, &mut replies).unwrap() {
                events.push(event);
            }
            assert!(buf.is_empty(), "cut at {cut}");
            assert_eq!(
                events,
                [
                    Event::Message(Bytes::from(vec![b'x'; 200])),
                    Event::Barrier,
                    Event::Other,
                    Event::Other,
                ],
                "cut at {cut}"
            );
            assert_eq!(replies.as_ref(), [0x40, 2, 0, 9]);
        }
    }

    #[test]
    fn decode_rejects_garbage() {
        let client = mqtt(Qos::AtMostOnce);
        let mut replies = BytesMut::new();
        let mut bad_length = BytesMut::from(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
        assert!(client.decode(&mut bad_length, &mut replies).is_err());
        let mut disconnect = BytesMut::from(&[0xe0, 0][..]);
        assert!(client.decode(&mut disconnect, &mut replies).is_err());
        let mut connect = BytesMut::from(&[0x10, 0][..]);
        assert!(client.decode(&mut connect, &mut replies).is_err());
        let mut empty = BytesMut::new();
        assert_eq!(client.decode(&mut empty, &mut replies).unwrap(), None);
    }

    #[test]
    fn connack_and_suback_refusals_are_errors() {
        assert!(!check_connack(&[0, 0]).unwrap());
        assert!(check_connack(&[1, 0]).unwrap());
        assert!(check_connack(&[0, 5]).is_err());
        assert!(check_connack(&[0]).is_err());
        assert!(check_suback(&[0, 1, 1, 0], 2).is_ok());
        assert!(check_suback(&[0, 1, 1, 0x80], 2).is_err());
        assert!(check_suback(&[0, 1, 1], 2).is_err());
    }

    #[test]
    fn packet_ids_skip_zero() {
        let client = mqtt(Qos::AtLeastOnce);
        client.next_id.store(u16::MAX, Ordering::Relaxed);
        assert_eq!(client.packet_id(), u16::MAX);
        assert_eq!(client.packet_id(), 1);
    }

    #[test]
    fn backlog_needs_qos_1_and_files_are_never_supported() {
        assert!(mqtt(Qos::AtLeastOnce).supports(Workload::Backlog).is_ok());
        assert!(mqtt(Qos::AtMostOnce).supports(Workload::Backlog).is_err());
        assert!(mqtt(Qos::AtLeastOnce).supports(Workload::Files).is_err());
        assert!(mqtt(Qos::AtMostOnce).supports(Workload::Group).is_ok());
    }
}
