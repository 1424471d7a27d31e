//! Prosody and a minimal XMPP client of it: stream opening, SASL PLAIN, resource
//! binding, presence, a multi-user chat room, chat messages, XEP-0199 pings, and a
//! stanza splitter for what the server sends.
//!
//! User `17` is `u17@localhost` (password `pw`, written into Prosody's account store
//! before it starts). A direct message is a `chat` message to the recipient's bare JID;
//! the group is the room `g@muc.localhost`, joined at login in a run of the group
//! workload, and a group message a `groupchat` message to it (the room echoes it to its
//! sender too). Messages to an offline user are stored by mod_offline and delivered at
//! its next login. The barrier is an iq ping to the server, answered once everything
//! before it is handled.
//!
//! The splitter is no XML parser: it finds where each top-level element of the stream
//! ends (quotes, self-closing tags, comments and CDATA included) and reads attributes
//! and the `<body>` of the stanzas this client cares about. It never validates
//! namespaces, never panics on malformed input (an error instead), and this client
//! never uses stream management, rosters, archives or file transfer.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use tokio::io::AsyncWriteExt;

use super::{Launch, read_more};
use crate::wire::{Event, Protocol, Tls, Workload};

/// The virtual host of the users.
const HOST: &str = "localhost";

/// The multi-user chat component.
const MUC_HOST: &str = "muc.localhost";

/// The room of the group workload.
const ROOM: &str = "g@muc.localhost";

/// Every user's password.
const PASSWORD: &str = "pw";

/// Every user's resource (one connection per user).
const RESOURCE: &str = "bench";

/// The id of a [`Protocol::barrier`] ping, echoed in its result.
const BARRIER_ID: &[u8] = b"bench-barrier";

/// The id of the ping that ends a login.
const LOGIN_ID: &[u8] = b"bench-login";

/// The id of the resource binding iq.
const BIND_ID: &[u8] = b"bench-bind";

/// The largest stanza accepted from the server (Prosody's own default limit for what
/// clients send is 256 KiB); more without an end is not XMPP.
const MAX_STANZA: usize = 1024 * 1024;

/// Prosody's configuration and account store for one run: `users` accounts
/// `u0`..`u{users-1}`, written as files in Prosody's internal storage format so that
/// a hundred thousand users take no registration round trips.
pub(super) fn setup(
    dir: &Path,
    addr: SocketAddr,
    cert: &Path,
    key: &Path,
    users: usize,
) -> anyhow::Result<Launch> {
    let data = dir.join("data");
    // Prosody encodes every non-alphanumeric byte of a host name as %xx.
    let accounts = data.join(store_name(HOST)).join("accounts");
    std::fs::create_dir_all(&accounts)
        .with_context(|| format!("cannot create {}", accounts.display()))?;
    let account = format!("return {{ [\"password\"] = \"{PASSWORD}\"; }};\n");
    for user in 0..users {
        let path = accounts.join(format!("u{user}.dat"));
        std::fs::write(&path, &account)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    // An empty certificate directory: Prosody indexes it at start and would log an
    // error for a missing one; the certificate in use is named below.
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs)
        .with_context(|| format!("cannot create {}", certs.display()))?;

    let config = format!(
        r#"-- vcom-bench peer: written per run, removed with its directory.
-- Started with -F (foreground) by the bench, as root in its sandbox.
run_as_root = true
pidfile = "{dir}/prosody.pid"
data_path = "{data}"
certificates = "{certs}"
-- Warnings and errors only: a log line per connection would cost the server under test.
log = {{ {{ levels = {{ min = "warn" }}, to = "file", filename = "{dir}/server.log" }} }}
network_backend = "epoll"
-- A listen backlog of 128 (the default) drops the SYNs of a burst of logins, whose
-- retries then take seconds. Nagle off, as the bench's clients and vcom-server have it
-- (else a login's small writes wait for delayed acknowledgements).
network_settings = {{ tcp_backlog = 4096; nagle = false }}

interfaces = {{ "{ip}" }}
local_interfaces = {{ "{ip}" }}
c2s_ports = {{ }}
legacy_ssl_ports = {{ }}
c2s_direct_tls_ports = {{ {port} }}
c2s_direct_tls_ssl = {{ certificate = "{cert}"; key = "{key}"; }}
ssl = {{ certificate = "{cert}"; key = "{key}"; }}
s2s_ports = {{ }}
component_ports = {{ }}

-- SASL, XEP-0199 ping; mod_offline (stores messages for offline users), mod_message,
-- mod_presence and mod_c2s are loaded by default. Not loaded: mod_limits (no rate
-- limits), rosters, archives (MAM), carbons, stream management, server to server.
modules_enabled = {{ "saslauth", "ping" }}
modules_disabled = {{ "s2s" }}
authentication = "internal_plain"
-- Files in the data directory, appended without fsync.
storage = "internal"
-- Offline messages are an archive store, capped at 10 000 per user by default.
storage_archive_item_limit = 1000000000

VirtualHost "{host}"

-- No history kept, no room lock to configure, and occupants' presence not broadcast:
-- else logging in n members would cost n^2 presence stanzas. No occupant ids either
-- (XEP-0421): a hash per occupant and newcomer, with nobody to read it.
Component "{muc}" "muc"
    muc_room_locking = false
    muc_room_default_history_length = 0
    muc_room_default_presence_broadcast = {{ }}
    muc_tombstones = false
    muc_occupant_id = false
    restrict_room_creation = false
"#,
        dir = dir.display(),
        data = data.display(),
        certs = certs.display(),
        ip = addr.ip(),
        port = addr.port(),
        cert = cert.display(),
        key = key.display(),
        host = HOST,
        muc = MUC_HOST,
    );
    let path = dir.join("prosody.cfg.lua");
    std::fs::write(&path, config).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Launch {
        program: "/usr/bin/prosody",
        args: vec!["-F".into(), "--config".into(), path.into_os_string()],
    })
}

/// A host name as Prosody's file storage names its directory (`%2e` for a dot).
fn store_name(host: &str) -> String {
    host.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// The XMPP client of one Prosody run.
pub(crate) struct Xmpp {
    /// Where the server listens.
    addr: SocketAddr,
    /// Trusts the server's per-run self-signed certificate.
    tls: Arc<rustls::ClientConfig>,
    /// Whether users join the room at login (see [`super::Joins`]).
    joins: super::Joins,
}

impl Xmpp {
    /// A client of the server at `addr`.
    pub(crate) fn new(addr: SocketAddr, joins: super::Joins) -> anyhow::Result<Xmpp> {
        Ok(Xmpp {
            addr,
            joins,
            tls: crate::wire::trust_any_tls()?,
        })
    }
}

/// What [`split_unit`] found at the start of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// An XML declaration, processing instruction or comment between stanzas.
    Prolog,
    /// The server's `<stream:stream ...>` header (left open until the end).
    StreamOpen,
    /// `</stream:stream>`: the server ends the stream.
    StreamClose,
    /// A whole top-level element: a stanza, `stream:features`, SASL or stream errors.
    Element,
}

/// Appends the client's stream header.
fn put_stream_open(out: &mut BytesMut) {
    out.put_slice(
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{HOST}' version='1.0'>"
        )
        .as_bytes(),
    );
}

/// Appends a message stanza to `to` of `kind` (`chat`, `groupchat`) with `body`.
fn put_message(to: &str, kind: &str, body: &[u8], out: &mut BytesMut) {
    out.put_slice(b"<message to='");
    out.put_slice(to.as_bytes());
    out.put_slice(b"' type='");
    out.put_slice(kind.as_bytes());
    out.put_slice(b"'><body>");
    escape(body, out);
    out.put_slice(b"</body></message>");
}

/// Appends `<iq type='get' id='{id}' to='{HOST}'>` with a XEP-0199 ping.
fn put_ping(id: &[u8], out: &mut BytesMut) {
    out.put_slice(b"<iq type='get' id='");
    out.put_slice(id);
    out.put_slice(format!("' to='{HOST}'><ping xmlns='urn:xmpp:ping'/></iq>").as_bytes());
}

/// Appends `text` escaped for XML character data or an attribute value. Control
/// characters XML 1.0 forbids are replaced (a payload is plain ASCII anyway).
fn escape(text: &[u8], out: &mut BytesMut) {
    for &b in text {
        match b {
            b'&' => out.put_slice(b"&amp;"),
            b'<' => out.put_slice(b"&lt;"),
            b'>' => out.put_slice(b"&gt;"),
            b'\'' => out.put_slice(b"&apos;"),
            b'"' => out.put_slice(b"&quot;"),
            b'\t' | b'\n' | b'\r' => out.put_u8(b),
            0..0x20 => out.put_u8(b'?'),
            _ => out.put_u8(b),
        }
    }
}

/// Resolves XML's predefined and numeric character references in `text`.
fn unescape(text: &[u8]) -> anyhow::Result<Cow<'_, [u8]>> {
    if !text.contains(&b'&') {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.iter().position(|&b| b == b'&') {
        out.extend_from_slice(&rest[..amp]);
        rest = &rest[amp + 1..];
        let semi = rest
            .iter()
            .take(12)
            .position(|&b| b == b';')
            .context("an XML entity without its `;`")?;
        let name = &rest[..semi];
        rest = &rest[semi + 1..];
        match name {
            b"amp" => out.push(b'&'),
            b"lt" => out.push(b'<'),
            b"gt" => out.push(b'>'),
            b"apos" => out.push(b'\''),
            b"quot" => out.push(b'"'),
            [b'#', digits @ ..] => {
                let digits = std::str::from_utf8(digits).context("a bad XML character")?;
                let code = match digits.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16),
                    None => digits.parse(),
                }
                .context("a bad XML character reference")?;
                let c = char::from_u32(code).context("a bad XML character reference")?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            }
            _ => bail!("an unknown XML entity &{};", String::from_utf8_lossy(name)),
        }
    }
    out.extend_from_slice(rest);
    Ok(Cow::Owned(out))
}

/// The position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The index of the `>` that ends the tag starting at `buf[start]` (a `<`), skipping
/// quoted attribute values. `None` if the tag is not all in `buf` yet.
fn tag_end(buf: &[u8], start: usize) -> anyhow::Result<Option<usize>> {
    let mut quote = None;
    for (i, &b) in buf.iter().enumerate().skip(start + 1) {
        match (quote, b) {
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"') => quote = Some(b),
            (None, b'>') => return Ok(Some(i)),
            (None, b'<') => bail!("a `<` inside an XML tag"),
            (None, _) => {}
        }
    }
    Ok(None)
}

/// The name of the tag starting at `tag[0]` (`<name ...`, `</name>`).
fn tag_name(tag: &[u8]) -> &[u8] {
    let tag = tag.get(1..).unwrap_or_default();
    let tag = tag.strip_prefix(b"/").unwrap_or(tag);
    let end = tag
        .iter()
        .position(|&b| b.is_ascii_whitespace() || b == b'/' || b == b'>')
        .unwrap_or(tag.len());
    &tag[..end]
}

/// Whether a start tag's name is the stream header's.
fn is_stream(name: &[u8]) -> bool {
    name == b"stream" || name.ends_with(b":stream")
}

/// Finds the first top-level unit of `buf`, which starts with `<` (the caller skips
/// whitespace between units): its length and kind. `None` until it is all in `buf`.
fn split_unit(buf: &[u8]) -> anyhow::Result<Option<(usize, Unit)>> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    ensure!(
        first == b'<',
        "text outside of any XMPP stanza: {:?}",
        String::from_utf8_lossy(&buf[..buf.len().min(40)])
    );
    let mut depth = 0usize;
    let mut pos = 0;
    loop {
        // `buf[pos]` is a `<`.
        let Some(&next) = buf.get(pos + 1) else {
            return Ok(None);
        };
        let rest = &buf[pos..];
        match next {
            b'?' => {
                let Some(end) = find(rest, b"?>") else {
                    return Ok(None);
                };
                pos += end + 2;
                if depth == 0 {
                    return Ok(Some((pos, Unit::Prolog)));
                }
            }
            b'!' => {
                let (open, close): (&[u8], &[u8]) = if rest.starts_with(b"<!--") {
                    (b"<!--", b"-->")
                } else if rest.starts_with(b"<![CDATA[") {
                    (b"<![CDATA[", b"]]>")
                } else if b"<!--".starts_with(rest) || b"<![CDATA[".starts_with(rest) {
                    return Ok(None);
                } else {
                    bail!("unsupported XML markup (a DTD?) in an XMPP stream");
                };
                let Some(end) = find(&rest[open.len()..], close) else {
                    return Ok(None);
                };
                pos += open.len() + end + close.len();
                if depth == 0 {
                    return Ok(Some((pos, Unit::Prolog)));
                }
            }
            b'/' => {
                let Some(end) = tag_end(buf, pos)? else {
                    return Ok(None);
                };
                if depth == 0 {
                    ensure!(
                        is_stream(tag_name(rest)),
                        "an XML end tag without its start"
                    );
                    return Ok(Some((end + 1, Unit::StreamClose)));
                }
                depth -= 1;
                pos = end + 1;
                if depth == 0 {
                    return Ok(Some((pos, Unit::Element)));
                }
            }
            _ => {
                let Some(end) = tag_end(buf, pos)? else {
                    return Ok(None);
                };
                if depth == 0 && is_stream(tag_name(rest)) {
                    return Ok(Some((end + 1, Unit::StreamOpen)));
                }
                let self_closing = buf.get(end.wrapping_sub(1)) == Some(&b'/');
                pos = end + 1;
                if !self_closing {
                    depth += 1;
                } else if depth == 0 {
                    return Ok(Some((pos, Unit::Element)));
                }
            }
        }
        // Character data up to the next markup.
        match buf[pos..].iter().position(|&b| b == b'<') {
            Some(offset) => pos += offset,
            None => return Ok(None),
        }
    }
}

/// Takes the first unit off `buf`, whitespace before it included. `None` (with `buf`
/// holding only the incomplete unit) until one is whole.
fn take_unit(buf: &mut BytesMut) -> anyhow::Result<Option<(Unit, Bytes)>> {
    let blank = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
    buf.advance(blank);
    match split_unit(buf)? {
        Some((len, unit)) => Ok(Some((unit, buf.split_to(len).freeze()))),
        None if buf.len() > MAX_STANZA => {
            bail!("an XMPP stanza longer than {MAX_STANZA} bytes")
        }
        None => Ok(None),
    }
}

/// The value of attribute `name` of the start tag at the beginning of `element`, still
/// escaped. Attribute values here are ids and JIDs the bench chose, never escaped.
fn attr<'a>(element: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let end = tag_end(element, 0).ok()??;
    let tag = &element[..end];
    let mut rest = &tag[1 + tag_name(tag).len()..];
    loop {
        let start = rest
            .iter()
            .position(|b| !b.is_ascii_whitespace() && *b != b'/')?;
        rest = &rest[start..];
        let eq = rest.iter().position(|&b| b == b'=')?;
        let key = rest[..eq].trim_ascii();
        rest = rest[eq + 1..].trim_ascii_start();
        let (&quote, value) = rest.split_first()?;
        let close = value.iter().position(|&b| b == quote)?;
        if key == name {
            return Some(&value[..close]);
        }
        rest = &value[close + 1..];
    }
}

/// The character data of the first `<name>` child in `element` (empty for `<name/>`),
/// still escaped. `None` if there is none.
fn child_text<'a>(element: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut from = 1;
    loop {
        let open = from + element.get(from..)?.iter().position(|&b| b == b'<')?;
        let tag = &element[open..];
        if tag_name(tag) == name && tag.get(1) != Some(&b'/') {
            let end = open + tag_end(tag, 0).ok()??;
            if element.get(end.wrapping_sub(1)) == Some(&b'/') {
                return Some(&[]);
            }
            let text = &element[end + 1..];
            let close = text.iter().position(|&b| b == b'<')?;
            return Some(&text[..close]);
        }
        from = open + 1;
    }
}

/// What a stanza the workloads read means, and the answer it needs if any.
fn interpret(element: &Bytes, replies: &mut BytesMut) -> anyhow::Result<Event> {
    match tag_name(element) {
        b"message" => {
            // An error bounce carries the original body: not a delivery.
            if attr(element, b"type") == Some(b"error") {
                return Ok(Event::Other);
            }
            match child_text(element, b"body") {
                Some(text) => Ok(Event::Message(match unescape(text)? {
                    Cow::Borrowed(text) => element.slice_ref(text),
                    Cow::Owned(text) => Bytes::from(text),
                })),
                None => Ok(Event::Other),
            }
        }
        b"iq" => {
            let id = attr(element, b"id").unwrap_or_default();
            match attr(element, b"type") {
                Some(b"result") if id == BARRIER_ID => Ok(Event::Barrier),
                Some(b"get" | b"set") => {
                    answer_iq(element, replies);
                    Ok(Event::Other)
                }
                _ => Ok(Event::Other),
            }
        }
        b"stream:error" => bail!(
            "the XMPP server ended the stream: {}",
            String::from_utf8_lossy(element)
        ),
        _ => Ok(Event::Other),
    }
}

/// Answers a request from the server: a ping with a result, anything else with
/// service-unavailable, as RFC 6120 wants every get and set answered.
fn answer_iq(element: &[u8], replies: &mut BytesMut) {
    let id = attr(element, b"id").unwrap_or_default();
    let from = attr(element, b"from");
    replies.put_slice(b"<iq id='");
    replies.put_slice(id);
    if let Some(from) = from {
        replies.put_slice(b"' to='");
        replies.put_slice(from);
    }
    if find(element, b"urn:xmpp:ping").is_some() {
        replies.put_slice(b"' type='result'/>");
    } else {
        replies.put_slice(
            b"' type='error'><error type='cancel'><service-unavailable \
              xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
    }
}

/// Standard base64 (RFC 4648, padded), for the SASL PLAIN response.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Writes and flushes `bytes` on a login's stream.
async fn write(stream: &mut Tls, bytes: &[u8]) -> anyhow::Result<()> {
    stream
        .write_all(bytes)
        .await
        .context("cannot write to the XMPP server")?;
    stream
        .flush()
        .await
        .context("cannot write to the XMPP server")
}

/// Reads the next whole unit of a login, reading from the stream as needed.
async fn next_unit(stream: &mut Tls, buf: &mut BytesMut) -> anyhow::Result<(Unit, Bytes)> {
    loop {
        if let Some(unit) = take_unit(buf)? {
            if unit.0 == Unit::StreamClose {
                bail!("the XMPP server closed the stream during login");
            }
            return Ok(unit);
        }
        read_more(stream, buf).await?;
    }
}

/// Reads past the stream header to the stream features.
async fn features(stream: &mut Tls, buf: &mut BytesMut) -> anyhow::Result<Bytes> {
    loop {
        let (unit, element) = next_unit(stream, buf).await?;
        if unit != Unit::Element {
            continue;
        }
        match tag_name(&element) {
            b"stream:features" => return Ok(element),
            b"stream:error" => bail!(
                "the XMPP server refused the stream: {}",
                String::from_utf8_lossy(&element)
            ),
            _ => {}
        }
    }
}

impl Protocol for Xmpp {
    fn name(&self) -> String {
        "prosody".into()
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
        // Prosody keeps messages for every offline account; `persistent` only says that
        // the login must not wait for them (see below).
        Box::pin(async move {
            let node = format!("u{user}");
            let mut out = BytesMut::new();
            put_stream_open(&mut out);
            write(stream, &out).await?;
            let offered = features(stream, buf).await?;
            ensure!(
                find(&offered, b">PLAIN<").is_some(),
                "the XMPP server offers no SASL PLAIN: {}",
                String::from_utf8_lossy(&offered)
            );

            let credentials = base64(format!("\0{node}\0{PASSWORD}").as_bytes());
            let auth = format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>\
                 {credentials}</auth>"
            );
            write(stream, auth.as_bytes()).await?;
            loop {
                let (unit, element) = next_unit(stream, buf).await?;
                match (unit, tag_name(&element)) {
                    (Unit::Element, b"success") => break,
                    (Unit::Element, b"failure") => bail!(
                        "the XMPP server refused {node}'s login: {}",
                        String::from_utf8_lossy(&element)
                    ),
                    _ => {}
                }
            }

            // After SASL the stream restarts; then bind the resource (Prosody 0.12
            // marks the legacy session establishment optional, so it is skipped).
            let mut out = BytesMut::new();
            put_stream_open(&mut out);
            out.put_slice(b"<iq type='set' id='");
            out.put_slice(BIND_ID);
            out.put_slice(
                format!(
                    "'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{RESOURCE}\
                     </resource></bind></iq>"
                )
                .as_bytes(),
            );
            write(stream, &out).await?;
            features(stream, buf).await?;
            loop {
                let (_, element) = next_unit(stream, buf).await?;
                if tag_name(&element) == b"iq" && attr(&element, b"id") == Some(BIND_ID) {
                    ensure!(
                        attr(&element, b"type") == Some(b"result"),
                        "the XMPP server refused to bind {node}'s resource: {}",
                        String::from_utf8_lossy(&element)
                    );
                    break;
                }
            }

            // Initial presence makes the user available (a chat message to a bare
            // JID reaches only available resources) and has mod_offline send what was
            // stored meanwhile; then join the room, and ping: the server handles a
            // session's stanzas in order, so the result comes after both, and a
            // message sent to this user once the login is over finds it available.
            // A persistent login (the backlog workload's recipient) sends its initial
            // presence last and does not wait past it: the backlog that follows may
            // be large, and is for `decode`.
            let join = self.joins == super::Joins::Group;
            let mut out = BytesMut::new();
            if !persistent {
                out.put_slice(b"<presence/>");
            }
            if join {
                out.put_slice(
                    format!(
                        "<presence to='{ROOM}/{node}'><x xmlns='http://jabber.org/protocol/muc'>\
                         <history maxstanzas='0'/></x></presence>"
                    )
                    .as_bytes(),
                );
            }
            put_ping(LOGIN_ID, &mut out);
            write(stream, &out).await?;

            let occupant = format!("{ROOM}/{node}");
            let mut kept = BytesMut::new();
            let (mut joined, mut ponged) = (!join, false);
            while !(joined && ponged) {
                let (_, element) = next_unit(stream, buf).await?;
                match tag_name(&element) {
                    b"message" => kept.put_slice(&element),
                    b"presence" if attr(&element, b"from") == Some(occupant.as_bytes()) => {
                        ensure!(
                            attr(&element, b"type") != Some(b"error"),
                            "{node} cannot join {ROOM}: {}",
                            String::from_utf8_lossy(&element)
                        );
                        joined = true;
                    }
                    b"iq" if attr(&element, b"id") == Some(LOGIN_ID) => ponged = true,
                    b"iq" => {
                        let mut reply = BytesMut::new();
                        interpret(&element, &mut reply)?;
                        write(stream, &reply).await?;
                    }
                    b"stream:error" => bail!(
                        "the XMPP server ended the stream: {}",
                        String::from_utf8_lossy(&element)
                    ),
                    _ => {}
                }
            }
            let rest = buf.split();
            buf.extend_from_slice(&kept);
            buf.extend_from_slice(&rest);
            if persistent {
                write(stream, b"<presence/>").await?;
            }
            Ok(())
        })
    }

    fn direct(&self, _from: usize, to: usize, payload: &[u8], out: &mut BytesMut) {
        put_message(&format!("u{to}@{HOST}"), "chat", payload, out);
    }

    fn group(&self, _from: usize, payload: &[u8], out: &mut BytesMut) {
        put_message(ROOM, "groupchat", payload, out);
    }

    fn barrier(&self, out: &mut BytesMut) {
        put_ping(BARRIER_ID, out);
    }

    fn decode(&self, buf: &mut BytesMut, replies: &mut BytesMut) -> anyhow::Result<Option<Event>> {
        match take_unit(buf)? {
            None => Ok(None),
            Some((Unit::Element, element)) => interpret(&element, replies).map(Some),
            Some((Unit::StreamClose, _)) => bail!("the XMPP server closed the stream"),
            Some((Unit::Prolog | Unit::StreamOpen, _)) => Ok(Some(Event::Other)),
        }
    }

    fn supports(&self, workload: Workload) -> Result<(), String> {
        match workload {
            Workload::Group => self.joins.group_ready(),
            Workload::Connections | Workload::Direct | Workload::Backlog => Ok(()),
            Workload::Files => Err("no XMPP file relay is measured: Jingle and SOCKS5 \
                bytestreams go between the clients or through a proxy, HTTP upload \
                through a web server, and in-band bytestreams are base64 chunks in \
                stanzas, which the direct workload already measures"
                .into()),
        }
    }

    fn settings(&self) -> String {
        "XMPP over direct TLS 1.3 (XEP-0368), Prosody 0.12, epoll, Nagle off; SASL \
         PLAIN against plain-text passwords (internal_plain); messages to offline users \
         stored by mod_offline in files (storage internal: appended, no fsync), delivered \
         at the next login; the group is a MUC room, joined at login in group runs only, \
         with no history and no occupant presence broadcast (joins are not announced to \
         every occupant), which echoes each message to its sender too; no rate limits \
         (mod_limits not loaded); no rosters, archives (MAM), carbons or stream management"
            .into()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A client of a server that is never contacted.
    fn xmpp() -> Xmpp {
        Xmpp::new(
            SocketAddr::from(([127, 0, 0, 1], 1)),
            super::super::Joins::Group,
        )
        .unwrap()
    }

    /// Decodes `whole` cut in two at every byte: the same events each time.
    fn decode_split(whole: &[u8]) -> (Vec<Event>, BytesMut) {
        let mut first: Option<(Vec<Event>, BytesMut)> = None;
        for cut in 0..=whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            let mut replies = BytesMut::new();
            let mut events = Vec::new();
            while let Some(event) = xmpp().decode(&mut buf, &mut replies).unwrap() {
                events.push(event);
            }
            buf.put_slice(&whole[cut..]);
            while let Some(event) = xmpp().decode(&mut buf, &mut replies).unwrap() {
                events.push(event);
            }
            assert!(buf.is_empty(), "cut at {cut}: {buf:?} left");
            match &first {
                None => first = Some((events, replies)),
                Some((e, r)) => {
                    assert_eq!(&events, e, "cut at {cut}");
                    assert_eq!(&replies, r, "cut at {cut}");
                }
            }
        }
        first.unwrap()
    }

    #[test]
    fn the_splitter_finds_each_top_level_unit() {
        let stream = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
            id='x' version='1.0' xmlns:stream='http://etherx.jabber.org/streams'>\
            <stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
            <mechanism>PLAIN</mechanism></mechanisms></stream:features> \n\
            <success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>\
            <!-- a comment --><message a='x>y' b=\"it's\"><body>1 > 0<![CDATA[</body>]]>\
            </body><x/></message></stream:stream>";
        let mut buf = BytesMut::from(&stream[..]);
        let mut units = Vec::new();
        while let Some((unit, element)) = take_unit(&mut buf).unwrap() {
            units.push((unit, tag_name(&element).to_vec()));
        }
        assert!(buf.is_empty());
        let names: Vec<(Unit, &[u8])> = units.iter().map(|(u, n)| (*u, &n[..])).collect();
        assert_eq!(
            names,
            [
                (Unit::Prolog, &b"?xml"[..]),
                (Unit::StreamOpen, b"stream:stream"),
                (Unit::Element, b"stream:features"),
                (Unit::Element, b"success"),
                (Unit::Prolog, b"!--"),
                (Unit::Element, b"message"),
                (Unit::StreamClose, b"stream:stream"),
            ]
        );
    }

    #[test]
    fn an_incomplete_unit_waits_and_garbage_is_an_error() {
        for partial in [
            &b"<"[..],
            b"<!-",
            b"<![CDA",
            b"<message",
            b"<message to='a>",
            b"<message><body>hi</body>",
            b"<?xml version='1.0'",
        ] {
            assert_eq!(split_unit(partial).unwrap(), None, "{partial:?}");
        }
        assert!(split_unit(b"hello").is_err());
        assert!(split_unit(b"</message>").is_err());
        assert!(split_unit(b"<a <b>").is_err());
        assert!(split_unit(b"<!DOCTYPE x>").is_err());
        let mut huge = BytesMut::from(&b"<message>"[..]);
        huge.put_bytes(b'x', MAX_STANZA);
        assert!(take_unit(&mut huge).is_err());
    }

    #[test]
    fn bodies_are_escaped_and_unescaped() {
        let mut out = BytesMut::new();
        put_message("u1@localhost", "chat", b"a<b&c>'d\"\x01", &mut out);
        assert_eq!(
            out.as_ref(),
            b"<message to='u1@localhost' type='chat'><body>a&lt;b&amp;c&gt;&apos;d&quot;?\
              </body></message>"
        );
        assert_eq!(
            unescape(b"a&lt;b&amp;c&gt;&apos;&quot;&#65;&#x42;").unwrap(),
            &b"a<b&c>'\"AB"[..]
        );
        assert!(matches!(unescape(b"plain").unwrap(), Cow::Borrowed(_)));
        assert!(unescape(b"&bogus;").is_err());
        assert!(unescape(b"&amp").is_err());
        assert!(unescape(b"&#xZZ;").is_err());
        assert!(unescape(b"&#1114112;").is_err());
    }

    #[test]
    fn messages_become_events_whatever_the_split() {
        let payload = crate::wire::payload(7, 2, 3);
        let mut wire = BytesMut::new();
        xmpp().direct(2, 1, &payload, &mut wire);
        let sent = wire.clone();
        let mut stream = BytesMut::new();
        // What Prosody delivers: the stanza with from, to and an id added.
        stream.put_slice(
            b"<message from='u2@localhost/bench' id='x1' type='chat' to='u1@localhost/bench'",
        );
        stream.put_slice(&sent[b"<message to='u1@localhost' type='chat'".len()..]);
        stream.put_slice(
            b"<message type='groupchat' from='g@muc.localhost/u2'>\
            <body>a &amp; b</body><occupant-id xmlns='urn:xmpp:occupant-id:0' id='z'/></message>",
        );
        stream.put_slice(b"<message from='g@muc.localhost' type='groupchat'><subject/></message>");
        stream.put_slice(b"<message type='error'><body>bounced</body></message>");
        stream.put_slice(b"<message><body/></message>");
        stream.put_slice(b"<presence from='g@muc.localhost/u1'/>");
        let (events, replies) = decode_split(&stream);
        assert_eq!(
            events,
            [
                Event::Message(Bytes::copy_from_slice(&payload)),
                Event::Message(Bytes::from_static(b"a & b")),
                Event::Other,
                Event::Other,
                Event::Message(Bytes::new()),
                Event::Other,
            ]
        );
        assert!(replies.is_empty());
    }

    #[test]
    fn pings_are_barriers_and_server_requests_are_answered() {
        let mut barrier = BytesMut::new();
        xmpp().barrier(&mut barrier);
        assert_eq!(
            barrier.as_ref(),
            b"<iq type='get' id='bench-barrier' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        );
        let stream =
            b"<iq type='result' id='bench-barrier' from='localhost' to='u1@localhost/bench'/>\
            <iq type='result' id='other'/>\
            <iq type='get' id='p1' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>\
            <iq type=\"set\" id=\"q\"><query xmlns='jabber:iq:roster'/></iq>";
        let (events, replies) = decode_split(stream);
        assert_eq!(
            events,
            [Event::Barrier, Event::Other, Event::Other, Event::Other]
        );
        assert_eq!(
            replies.as_ref(),
            &b"<iq id='p1' to='localhost' type='result'/><iq id='q' type='error'>\
               <error type='cancel'><service-unavailable \
               xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"[..]
        );
    }

    #[test]
    fn a_stream_error_or_end_is_an_error() {
        let mut replies = BytesMut::new();
        let mut buf = BytesMut::from(
            &b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"[..],
        );
        assert!(xmpp().decode(&mut buf, &mut replies).is_err());
        let mut buf = BytesMut::from(&b"  </stream:stream>"[..]);
        assert!(xmpp().decode(&mut buf, &mut replies).is_err());
        let mut buf = BytesMut::from(&b" \n "[..]);
        assert_eq!(xmpp().decode(&mut buf, &mut replies).unwrap(), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn attributes_and_children_are_found_by_name() {
        let element = b"<iq xml:lang='en' type = \"result\" id='a/b' to='x'><bind><jid>u1@localhost/bench</jid></bind></iq>";
        assert_eq!(attr(element, b"type"), Some(&b"result"[..]));
        assert_eq!(attr(element, b"id"), Some(&b"a/b"[..]));
        assert_eq!(attr(element, b"lang"), None);
        assert_eq!(attr(element, b"from"), None);
        assert_eq!(attr(b"<presence/>", b"type"), None);
        assert_eq!(attr(b"<presence type='x'/>", b"type"), Some(&b"x"[..]));
        assert_eq!(
            child_text(element, b"jid"),
            Some(&b"u1@localhost/bench"[..])
        );
        assert_eq!(child_text(element, b"body"), None);
        assert_eq!(
            child_text(
                b"<message><bodyx>no</bodyx><body>yes</body></message>",
                b"body"
            ),
            Some(&b"yes"[..])
        );
    }

    #[test]
    fn sasl_plain_credentials_are_base64() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"\0u17\0pw"), "AHUxNwBwdw==");
    }

    #[test]
    fn host_names_are_stored_with_escaped_dots() {
        assert_eq!(store_name("localhost"), "localhost");
        assert_eq!(store_name("muc.localhost"), "muc%2elocalhost");
    }

    #[test]
    fn only_files_are_unsupported() {
        for workload in Workload::ALL {
            assert_eq!(
                xmpp().supports(workload).is_ok(),
                workload != Workload::Files,
                "{workload:?}"
            );
        }
    }
}
