//! InspIRCd and a minimal IRC client of it: registration (NICK, USER), JOIN, PRIVMSG,
//! PING and PONG, and the parsing of the lines a server sends.
//!
//! User `17` is nick `u17`; in a run of the group workload every user joins channel
//! `#g` at login. A direct message is `PRIVMSG u17 :<payload>`, a group message
//! `PRIVMSG #g :<payload>` (IRC never echoes a channel message to its sender). The
//! barrier is `PING :bench-barrier`, answered by a PONG once the server has handled
//! everything before it.
//!
//! This client asks for no IRCv3 capabilities and never stores anything: IRC keeps
//! nothing for a user who is offline, and DCC file transfers go peer to peer, not
//! through the server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use tokio::io::AsyncWriteExt;

use super::{Launch, read_more};
use crate::wire::{Event, Protocol, Tls, Workload};

/// The channel of the group workload.
const CHANNEL: &str = "#g";

/// The token of a [`Protocol::barrier`] PING, echoed in its PONG.
const BARRIER_TOKEN: &[u8] = b"bench-barrier";

/// The token of the PING that ends a login.
const LOGIN_TOKEN: &[u8] = b"bench-login";

/// The longest line accepted from the server. RFC 1459 says 512 bytes; IRCv3 message
/// tags (never asked for) could add 8 KiB. Anything longer is not IRC.
const MAX_LINE: usize = 16 * 1024;

/// InspIRCd's configuration for one run, written in full so that nothing of the
/// system's `/etc/inspircd` applies.
pub(super) fn setup(
    dir: &Path,
    addr: SocketAddr,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<Launch> {
    let dir_s = dir.display();
    let motd = dir.join("motd.txt");
    std::fs::write(&motd, "vcom-bench peer\n")
        .with_context(|| format!("cannot write {}", motd.display()))?;
    let config = format!(
        r#"# vcom-bench peer: written per run, removed with its directory.
<server name="bench.local" description="vcom-bench peer" network="bench">
<admin name="bench" nick="bench" email="bench@bench.local">
<module name="ssl_gnutls">
<module name="auditorium">
<module name="permchannels">
<sslprofile name="bench" provider="gnutls" certfile="{cert}" keyfile="{key}" hash="sha256" requestclientcert="no">
<bind address="{ip}" port="{port}" type="clients" sslprofile="bench">

# Flood protection off: a penalty threshold (4 million commands at once; InspIRCd
# multiplies it by 1000 in 32 bits, so no higher) and a command rate (a million a
# second) no client reaches, no fake lag, queues of 1 GiB, no per-address clone limits
# (clients come from 127.2.x.y but many share an address), no DNS or ident lookups,
# pings once an hour.
<connect name="bench" allow="*" maxchans="100" timeout="60" pingfreq="3600"
         hardsendq="1073741824" softsendq="1073741824" recvq="1073741824"
         threshold="4000000" commandrate="1000000000" fakelag="no"
         localmax="1000000" globalmax="1000000" maxconnwarn="no" limit="1000000"
         resolvehostnames="no" useident="no">
<cidr ipv4clone="32" ipv6clone="128">
<performance quietbursts="yes" softlimit="1000000" somaxconn="4096" netbuffersize="65536" clonesonconnect="no">
<dns server="127.0.0.1" timeout="1">

# The group channel exists from the start (+P), so nobody becomes its operator, and is
# an auditorium (+u): a join is not announced to every member and NAMES lists only the
# joiner, else logging in n members would cost n^2 lines. Messages reach every member.
# No member limit (+l unset).
<permchannels channel="{channel}" modes="ntuP" topic="">
<auditorium opvisible="no" opcansee="no" opercansee="no">

<channels users="100" opers="100">
<options syntaxhints="no" announcets="no" hostintopic="no" pingwarning="0" splitwhois="no" exemptchanops="">
<security hideserver="" userstats="Pu" flatlinks="no" hidesplits="no" hideulines="no" hidebans="no" maxtargets="20">
<files motd="{motd}">
<pid file="{dir_s}/inspircd.pid">
# Important events only: a log line per connection would cost the server under test.
<log method="file" type="* -USERINPUT -USEROUTPUT" level="sparse" target="{dir_s}/server.log">
"#,
        cert = cert.display(),
        key = key.display(),
        ip = addr.ip(),
        port = addr.port(),
        channel = CHANNEL,
        motd = motd.display(),
    );
    let path = dir.join("inspircd.conf");
    std::fs::write(&path, config).with_context(|| format!("cannot write {}", path.display()))?;
    let mut config_arg = std::ffi::OsString::from("--config=");
    config_arg.push(&path);
    Ok(Launch {
        program: "/usr/sbin/inspircd",
        args: vec![config_arg, "--nofork".into(), "--runasroot".into()],
    })
}

/// The IRC client of one InspIRCd run.
pub(crate) struct Irc {
    /// Where the server listens.
    addr: SocketAddr,
    /// Trusts the server's per-run self-signed certificate.
    tls: Arc<rustls::ClientConfig>,
    /// Whether users join the channel at login (see [`super::Joins`]).
    joins: super::Joins,
}

impl Irc {
    /// A client of the server at `addr`.
    pub(crate) fn new(addr: SocketAddr, joins: super::Joins) -> anyhow::Result<Irc> {
        Ok(Irc {
            addr,
            joins,
            tls: crate::wire::trust_any_tls()?,
        })
    }
}

/// Appends `PRIVMSG target :text`. A payload is plain ASCII; a CR, LF or NUL would end
/// or corrupt the line, so they are replaced rather than sent.
fn put_privmsg(target: &str, text: &[u8], out: &mut BytesMut) {
    out.put_slice(b"PRIVMSG ");
    out.put_slice(target.as_bytes());
    out.put_slice(b" :");
    out.extend(text.iter().map(|&b| {
        if matches!(b, b'\r' | b'\n' | 0) {
            b'?'
        } else {
            b
        }
    }));
    out.put_slice(b"\r\n");
}

/// Appends the PONG that answers a server's PING with `token`.
fn put_pong(token: &[u8], out: &mut BytesMut) {
    out.put_slice(b"PONG :");
    out.put_slice(token);
    out.put_slice(b"\r\n");
}

impl Protocol for Irc {
    fn name(&self) -> String {
        "inspircd".into()
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
        _persistent: bool,
        stream: &'a mut Tls,
        buf: &'a mut BytesMut,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let nick = format!("u{user}");
            let hello = format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n");
            write(stream, hello.as_bytes()).await?;

            // Registration ends with 001 (InspIRCd completes registrations in a
            // once-a-second pass, so this takes up to a second). Commands other than
            // NICK, USER and PONG are refused before it, so JOIN waits; the PING after
            // it answers once the JOIN is done. Messages that arrive meanwhile stay in
            // `buf` for `decode`.
            let mut kept = BytesMut::new();
            let mut registered = false;
            loop {
                let Some(raw) = split_line(buf)? else {
                    read_more(stream, buf).await?;
                    continue;
                };
                let Some(line) = parse_line(&raw) else {
                    continue;
                };
                match line.command {
                    b"001" => {
                        registered = true;
                        let mut out = BytesMut::new();
                        if self.joins == super::Joins::Group {
                            out.put_slice(format!("JOIN {CHANNEL}\r\n").as_bytes());
                        }
                        out.put_slice(b"PING :");
                        out.put_slice(LOGIN_TOKEN);
                        out.put_slice(b"\r\n");
                        write(stream, &out).await?;
                    }
                    b"PING" => {
                        let mut out = BytesMut::new();
                        put_pong(line.last_param(), &mut out);
                        write(stream, &out).await?;
                    }
                    b"PONG" if registered && line.last_param() == LOGIN_TOKEN => break,
                    b"PRIVMSG" => kept.put_slice(&raw),
                    b"ERROR" => bail!(
                        "the IRC server closed the connection: {}",
                        String::from_utf8_lossy(line.last_param())
                    ),
                    // Nick in use or invalid, channel full, banned, too many channels.
                    b"432" | b"433" | b"405" | b"471" | b"473" | b"474" | b"475" => bail!(
                        "the IRC server refused {nick}: {}",
                        String::from_utf8_lossy(&raw).trim_end()
                    ),
                    _ => {}
                }
            }
            let rest = buf.split();
            buf.extend_from_slice(&kept);
            buf.extend_from_slice(&rest);
            Ok(())
        })
    }

    fn direct(&self, _from: usize, to: usize, payload: &[u8], out: &mut BytesMut) {
        put_privmsg(&format!("u{to}"), payload, out);
    }

    fn group(&self, _from: usize, payload: &[u8], out: &mut BytesMut) {
        put_privmsg(CHANNEL, payload, out);
    }

    fn barrier(&self, out: &mut BytesMut) {
        // The server handles a client's lines in order (fake lag is off, so none is
        // held back), so the PONG comes after every PRIVMSG before it is delivered.
        out.put_slice(b"PING :");
        out.put_slice(BARRIER_TOKEN);
        out.put_slice(b"\r\n");
    }

    fn decode(&self, buf: &mut BytesMut, replies: &mut BytesMut) -> anyhow::Result<Option<Event>> {
        let Some(raw) = split_line(buf)? else {
            return Ok(None);
        };
        let Some(line) = parse_line(&raw) else {
            return Ok(Some(Event::Other));
        };
        let event = match line.command {
            b"PRIVMSG" => Event::Message(raw.slice_ref(line.last_param())),
            b"PING" => {
                put_pong(line.last_param(), replies);
                Event::Other
            }
            b"PONG" if line.last_param() == BARRIER_TOKEN => Event::Barrier,
            b"ERROR" => bail!(
                "the IRC server closed the connection: {}",
                String::from_utf8_lossy(line.last_param())
            ),
            _ => Event::Other,
        };
        Ok(Some(event))
    }

    fn supports(&self, workload: Workload) -> Result<(), String> {
        match workload {
            Workload::Group => self.joins.group_ready(),
            Workload::Connections | Workload::Direct => Ok(()),
            Workload::Backlog => Err("IRC stores nothing for offline users: a PRIVMSG to \
                a nick that is not connected is refused (401 no such nick)"
                .into()),
            Workload::Files => Err("IRC relays no files: DCC transfers go directly \
                between the two clients, not through the server"
                .into()),
        }
    }

    fn settings(&self) -> String {
        "IRC over TLS 1.3 (GnuTLS), InspIRCd 3; nothing stored (no offline delivery, \
         no history); flood protection off (a burst of 4 million commands and a million \
         a second allowed per client, no fake lag, send and receive queues 1 GiB, no \
         per-address clone limits, no DNS or ident lookups); Nagle left on (InspIRCd sets \
         no TCP_NODELAY and has no option for it); the group is channel #g, joined at \
         login in group runs only, permanent and in auditorium mode (+u) so that joins \
         are not broadcast to every member; the sender of a channel message gets no \
         copy; registration completes in InspIRCd's once-a-second background pass \
         (login latency up to 1 s)"
            .into()
    }
}

/// Writes and flushes `bytes` on a login's stream.
async fn write(stream: &mut Tls, bytes: &[u8]) -> anyhow::Result<()> {
    stream
        .write_all(bytes)
        .await
        .context("cannot write to the IRC server")?;
    stream
        .flush()
        .await
        .context("cannot write to the IRC server")
}

/// Takes the first whole line (through its `\n`) off `buf`.
fn split_line(buf: &mut BytesMut) -> anyhow::Result<Option<Bytes>> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) => Ok(Some(buf.split_to(end + 1).freeze())),
        None if buf.len() > MAX_LINE => {
            bail!("an IRC line longer than {MAX_LINE} bytes: not an IRC server")
        }
        None => Ok(None),
    }
}

/// One line from the server, split into its parts (borrowed from the line).
#[derive(Debug, PartialEq, Eq)]
struct Line<'a> {
    /// Where it comes from (`nick!user@host` or a server name), without the colon.
    prefix: Option<&'a [u8]>,
    /// The command or three-digit numeric.
    command: &'a [u8],
    /// The parameters, the trailing one (after ` :`) last, without its colon.
    params: Vec<&'a [u8]>,
}

impl<'a> Line<'a> {
    /// The last parameter (a PRIVMSG's text, a PING's token), empty if none.
    fn last_param(&self) -> &'a [u8] {
        self.params.last().copied().unwrap_or_default()
    }
}

/// Parses a line (`[@tags] [:prefix] COMMAND params... [:trailing]`, with or without
/// its CR LF). `None` for a blank line.
fn parse_line(line: &[u8]) -> Option<Line<'_>> {
    let mut rest = line;
    while let [head @ .., b'\r' | b'\n'] = rest {
        rest = head;
    }
    // IRCv3 tags, if a server sent them unasked: skipped.
    if rest.first() == Some(&b'@') {
        rest = word(rest).1;
    }
    let mut prefix = None;
    if let Some(after) = rest.strip_prefix(b":") {
        let (p, tail) = word(after);
        prefix = Some(p);
        rest = tail;
    }
    let (command, mut rest) = word(rest);
    if command.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    while !rest.is_empty() {
        if let Some(trailing) = rest.strip_prefix(b":") {
            params.push(trailing);
            break;
        }
        let (param, tail) = word(rest);
        params.push(param);
        rest = tail;
    }
    Some(Line {
        prefix,
        command,
        params,
    })
}

/// Splits off the first space-separated word; the rest starts at the next non-space.
fn word(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
    let (word, rest) = s.split_at(end);
    let skip = rest.iter().take_while(|&&b| b == b' ').count();
    (word, &rest[skip..])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A client of a server that is never contacted.
    fn irc() -> Irc {
        Irc::new(
            SocketAddr::from(([127, 0, 0, 1], 1)),
            super::super::Joins::Group,
        )
        .unwrap()
    }

    #[test]
    fn lines_split_into_prefix_command_and_params() {
        let line = parse_line(b":u2!u2@127.2.0.3 PRIVMSG #g :hello there\r\n").unwrap();
        assert_eq!(line.prefix, Some(&b"u2!u2@127.2.0.3"[..]));
        assert_eq!(line.command, b"PRIVMSG");
        assert_eq!(line.params, [&b"#g"[..], b"hello there"]);

        let line = parse_line(b"PING :irc.example\n").unwrap();
        assert_eq!(line.prefix, None);
        assert_eq!(line.command, b"PING");
        assert_eq!(line.last_param(), b"irc.example");

        let line = parse_line(b":srv 001 u1 :Welcome").unwrap();
        assert_eq!(line.command, b"001");
        assert_eq!(line.params, [&b"u1"[..], b"Welcome"]);

        let line = parse_line(b"@time=x :srv  PONG  srv :tok\r\n").unwrap();
        assert_eq!(line.command, b"PONG");
        assert_eq!(line.params, [&b"srv"[..], b"tok"]);

        let line = parse_line(b":srv MODE #g +nt").unwrap();
        assert_eq!(line.params, [&b"#g"[..], b"+nt"]);
        assert_eq!(parse_line(b"\r\n"), None);
        assert_eq!(parse_line(b":only-prefix"), None);
    }

    #[test]
    fn privmsg_is_encoded_with_a_trailing_parameter() {
        let mut out = BytesMut::new();
        irc().direct(1, 17, b"hi there", &mut out);
        irc().group(1, b"x\r\ny", &mut out);
        assert_eq!(
            out.as_ref(),
            b"PRIVMSG u17 :hi there\r\nPRIVMSG #g :x??y\r\n"
        );
    }

    #[test]
    fn decode_yields_messages_answers_pings_and_sees_barriers() {
        let payload = crate::wire::payload(99, 3, 4);
        let mut stream = BytesMut::new();
        stream.put_slice(b":u3!u3@127.2.0.4 PRIVMSG u1 :");
        stream.put_slice(&payload);
        stream.put_slice(b"\r\nPING :bench.local\r\n");
        stream.put_slice(b":bench.local PONG bench.local :bench-barrier\r\n");
        stream.put_slice(b":bench.local PONG bench.local :other\r\n");
        stream.put_slice(b":bench.local NOTICE u1 :*** hello\n");
        let whole = stream.freeze();

        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            let mut replies = BytesMut::new();
            let mut events = Vec::new();
            while let Some(event) = irc().decode(&mut buf, &mut replies).unwrap() {
                events.push(event);
            }
            buf.put_slice(&whole[cut..]);
            while let Some(event) = irc().decode(&mut buf, &mut replies).unwrap() {
                events.push(event);
            }
            assert!(buf.is_empty());
            assert_eq!(
                events,
                [
                    Event::Message(Bytes::copy_from_slice(&payload)),
                    Event::Other,
                    Event::Barrier,
                    Event::Other,
                    Event::Other,
                ],
                "cut at {cut}"
            );
            assert_eq!(replies.as_ref(), b"PONG :bench.local\r\n");
        }
    }

    #[test]
    fn barrier_is_a_ping_with_the_barrier_token() {
        let mut out = BytesMut::new();
        irc().barrier(&mut out);
        assert_eq!(out.as_ref(), b"PING :bench-barrier\r\n");
    }

    #[test]
    fn an_error_line_or_an_endless_line_is_an_error() {
        let mut replies = BytesMut::new();
        let mut buf = BytesMut::from(&b"ERROR :Closing link: (Excess flood)\r\n"[..]);
        assert!(irc().decode(&mut buf, &mut replies).is_err());
        let mut buf = BytesMut::from(&[b'x'; MAX_LINE + 1][..]);
        assert!(irc().decode(&mut buf, &mut replies).is_err());
        let mut buf = BytesMut::from(&b"\r\n"[..]);
        assert_eq!(
            irc().decode(&mut buf, &mut replies).unwrap(),
            Some(Event::Other)
        );
    }

    #[test]
    fn backlog_and_files_are_not_supported() {
        assert!(irc().supports(Workload::Backlog).is_err());
        assert!(irc().supports(Workload::Files).is_err());
        assert!(irc().supports(Workload::Group).is_ok());
    }
}
