//! The chat UI's state and its transitions, with no terminal and no network: keys and
//! server events go in, [`Action`]s for the IO loop come out.
//!
//! Keeping this pure makes every rule (unread counts, switching, what Enter does)
//! testable without a terminal. It must never do IO or read the clock; the caller
//! passes the time in.

use std::collections::VecDeque;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use vcom_client::{
    Direction, GroupId, HistoryEntry, Timestamp, TransferId, TransferOutcome, UserId,
};

use crate::client::format::{body, size};

/// A conversation: the broadcasts, a user, or a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConversationId {
    /// The administrator's broadcasts (read-only).
    Broadcasts,
    /// Direct messages with a user.
    User(UserId),
    /// A group's messages.
    Group(GroupId),
}

impl ConversationId {
    /// How the conversation is named on screen.
    pub fn title(&self) -> String {
        match self {
            ConversationId::Broadcasts => "broadcasts".to_owned(),
            ConversationId::User(user) => user.to_string(),
            ConversationId::Group(group) => format!("group {group}"),
        }
    }
}

/// One line of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// Who wrote it (`*` for a broadcast).
    pub sender: String,
    /// When (the sender's clock for received messages, ours for our own).
    pub at: Timestamp,
    /// The text, or a note for an image.
    pub body: String,
    /// Written by this user.
    pub own: bool,
}

/// A conversation and its messages, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Which conversation.
    pub id: ConversationId,
    /// Its messages.
    pub lines: Vec<ChatLine>,
    /// Messages that arrived while another conversation was shown.
    pub unread: usize,
}

/// A file someone offers, waiting for `/accept` or `/decline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferPrompt {
    /// The transfer.
    pub transfer: TransferId,
    /// Who offers it.
    pub sender: UserId,
    /// The file name as offered.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// An accepted file being received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiving {
    /// The transfer.
    pub transfer: TransferId,
    /// The file name as offered.
    pub name: String,
    /// Bytes received.
    pub done: u64,
    /// The announced size.
    pub total: u64,
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A user.
    User(UserId),
    /// A group.
    Group(GroupId),
}

/// What the IO loop must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a text message.
    Send {
        /// The recipient.
        to: Target,
        /// The message.
        text: String,
    },
    /// Add a user to the friend list.
    AddFriend(UserId),
    /// Accept the offered file into the downloads directory.
    Accept(TransferId),
    /// Decline the offered file.
    Decline(TransferId),
}

/// The help shown in the status line when there is nothing else to say.
pub const HELP: &str = "Tab/Up/Down: switch  /add USER  /group GID  /quit";

/// The chat UI's state. See the module documentation.
#[derive(Debug, Clone)]
pub struct App {
    me: UserId,
    server: String,
    conversations: Vec<Conversation>,
    selected: usize,
    input: String,
    offers: VecDeque<OfferPrompt>,
    receiving: Vec<Receiving>,
    status: Option<String>,
    quit: bool,
}

impl App {
    /// A new UI for `me` on `server`, showing only the broadcasts conversation.
    pub fn new(me: UserId, server: impl Into<String>) -> App {
        App {
            me,
            server: server.into(),
            conversations: vec![Conversation {
                id: ConversationId::Broadcasts,
                lines: Vec::new(),
                unread: 0,
            }],
            selected: 0,
            input: String::new(),
            offers: VecDeque::new(),
            receiving: Vec::new(),
            status: None,
            quit: false,
        }
    }

    /// The logged-in user.
    pub fn me(&self) -> &UserId {
        &self.me
    }

    /// The server's address.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Every conversation, in the order they are listed.
    pub fn conversations(&self) -> &[Conversation] {
        &self.conversations
    }

    /// The index of the shown conversation.
    pub fn selected_index(&self) -> usize {
        self.selected
    }

    /// The shown conversation.
    pub fn selected(&self) -> Option<&Conversation> {
        self.conversations.get(self.selected)
    }

    /// The text being typed.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// The oldest offer waiting for an answer.
    pub fn offer(&self) -> Option<&OfferPrompt> {
        self.offers.front()
    }

    /// Files being received.
    pub fn receiving(&self) -> &[Receiving] {
        &self.receiving
    }

    /// The last status message.
    pub fn status(&self) -> Option<&str> {
        self.status.as_deref()
    }

    /// True once the user asked to quit.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Sets the status line's message (results of actions, errors).
    pub fn set_status(&mut self, status: impl Into<String>) {
        self.status = Some(status.into());
    }

    /// The index of a conversation, added at the end of the list if new.
    pub fn open(&mut self, id: ConversationId) -> usize {
        if let Some(i) = self.conversations.iter().position(|c| c.id == id) {
            return i;
        }
        self.conversations.push(Conversation {
            id,
            lines: Vec::new(),
            unread: 0,
        });
        self.conversations.len() - 1
    }

    /// Shows the conversation at `index` and marks it read.
    pub fn select(&mut self, index: usize) {
        if let Some(conversation) = self.conversations.get_mut(index) {
            conversation.unread = 0;
            self.selected = index;
        }
    }

    /// Makes sure every friend has a conversation.
    pub fn on_friends(&mut self, friends: &[UserId]) {
        for friend in friends {
            self.open(ConversationId::User(friend.clone()));
        }
    }

    /// A message arrived (or was loaded from the history, with `count_unread` false).
    pub fn on_message(
        &mut self,
        sender: &UserId,
        group: Option<GroupId>,
        at: Timestamp,
        body: String,
        count_unread: bool,
    ) {
        let id = match group {
            Some(group) => ConversationId::Group(group),
            None => ConversationId::User(sender.clone()),
        };
        let own = *sender == self.me;
        let line = ChatLine {
            sender: sender.to_string(),
            at,
            body,
            own,
        };
        self.push(id, line, count_unread);
    }

    /// A message this user sent to `to` at `at` (in this session, once the SDK took it,
    /// or from the history): shown as their own line, never unread.
    pub fn on_sent(&mut self, to: &Target, at: Timestamp, body: String) {
        let id = match to {
            Target::User(user) => ConversationId::User(user.clone()),
            Target::Group(group) => ConversationId::Group(*group),
        };
        let line = ChatLine {
            sender: self.me.to_string(),
            at,
            body,
            own: true,
        };
        self.push(id, line, false);
    }

    /// Fills the conversations from the history, both directions in the order recorded.
    ///
    /// The last `fresh` received messages arrived during this login and count as
    /// unread; sent ones never do. Returns the highest history row shown, so the caller
    /// can skip the events for messages that were already in the history when it was
    /// read (they would otherwise be shown twice).
    pub fn load_history(&mut self, entries: &[HistoryEntry], fresh: u64) -> i64 {
        let received = entries
            .iter()
            .filter(|e| e.direction == Direction::Incoming)
            .count();
        let fresh = usize::try_from(fresh).unwrap_or(usize::MAX);
        let first_fresh = received.saturating_sub(fresh);
        let mut received_so_far = 0;
        let mut last = 0;
        for e in entries {
            last = last.max(e.id);
            let text = body(e.kind, &e.data);
            match e.direction {
                Direction::Incoming => {
                    let unread = received_so_far >= first_fresh;
                    received_so_far += 1;
                    self.on_message(&e.sender, e.group, e.sent_at, text, unread);
                }
                Direction::Outgoing => {
                    let to = match (e.group, &e.peer) {
                        (Some(group), _) => Target::Group(group),
                        (None, Some(peer)) => Target::User(peer.clone()),
                        // The history writes a peer for every direct message.
                        (None, None) => continue,
                    };
                    self.on_sent(&to, e.sent_at, text);
                }
            }
        }
        last
    }

    /// A broadcast from the administrator arrived at `at`.
    pub fn on_broadcast(&mut self, text: String, at: Timestamp) {
        let line = ChatLine {
            sender: "*".to_owned(),
            at,
            body: text,
            own: false,
        };
        self.push(ConversationId::Broadcasts, line, true);
    }

    fn push(&mut self, id: ConversationId, line: ChatLine, count_unread: bool) {
        let index = self.open(id);
        let shown = index == self.selected;
        if let Some(conversation) = self.conversations.get_mut(index) {
            conversation.lines.push(line);
            if count_unread && !shown {
                conversation.unread += 1;
            }
        }
    }

    /// Someone offers a file: ask about it in the status line.
    pub fn on_offer(&mut self, offer: OfferPrompt) {
        self.offers.push_back(offer);
    }

    /// Bytes of an accepted file arrived.
    pub fn on_progress(&mut self, transfer: TransferId, done: u64, total: u64) {
        if let Some(r) = self.receiving.iter_mut().find(|r| r.transfer == transfer) {
            r.done = done;
            r.total = total;
        }
    }

    /// A transfer or an unanswered offer ended.
    pub fn on_transfer_finished(&mut self, transfer: TransferId, outcome: &TransferOutcome) {
        let offered = self
            .offers
            .iter()
            .position(|o| o.transfer == transfer)
            .and_then(|i| self.offers.remove(i))
            .map(|o| o.name);
        let received = self
            .receiving
            .iter()
            .position(|r| r.transfer == transfer)
            .map(|i| self.receiving.remove(i).name);
        let name = received.or(offered).unwrap_or_else(|| "a file".to_owned());
        self.status = Some(match outcome {
            TransferOutcome::Completed { path } => format!("saved {}", path.display()),
            TransferOutcome::Aborted(reason) => format!("{name}: aborted: {reason}"),
            TransferOutcome::Failed(why) => format!("{name}: failed: {why}"),
        });
    }

    /// Handles a key press; returns what the IO loop must do, if anything.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Action> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => {
                self.quit = true;
                None
            }
            KeyCode::Esc => {
                self.quit = true;
                None
            }
            KeyCode::Tab | KeyCode::Down => {
                self.select((self.selected + 1) % self.conversations.len().max(1));
                None
            }
            KeyCode::BackTab | KeyCode::Up => {
                let n = self.conversations.len().max(1);
                self.select((self.selected + n - 1) % n);
                None
            }
            KeyCode::Enter => self.submit(),
            KeyCode::Backspace => {
                self.input.pop();
                None
            }
            KeyCode::Char(c) if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) => {
                self.input.push(c);
                None
            }
            _ => None,
        }
    }

    /// Enter: runs a `/command`, or asks to send the input to the shown conversation.
    ///
    /// The line is not shown yet: the IO loop calls [`App::on_sent`] once the SDK took
    /// the message (and recorded it in the history), so the screen shows what a restart
    /// would show, and a failed send leaves no line behind.
    pub fn submit(&mut self) -> Option<Action> {
        let input = std::mem::take(&mut self.input);
        let text = input.trim();
        if text.is_empty() {
            return None;
        }
        if let Some(command) = text.strip_prefix('/') {
            return self.command(command);
        }
        let to = match self.selected().map(|c| &c.id) {
            Some(ConversationId::User(user)) => Target::User(user.clone()),
            Some(ConversationId::Group(group)) => Target::Group(*group),
            Some(ConversationId::Broadcasts) | None => {
                self.input = input;
                self.status = Some(
                    "broadcasts are read-only: pick a friend or a group (Tab), or /add USER"
                        .to_owned(),
                );
                return None;
            }
        };
        Some(Action::Send { to, text: input })
    }

    fn command(&mut self, command: &str) -> Option<Action> {
        let (name, arg) = command
            .split_once(char::is_whitespace)
            .map_or((command, ""), |(n, a)| (n, a.trim()));
        match (name, arg) {
            ("quit" | "q", _) => {
                self.quit = true;
                None
            }
            ("add", user) if !user.is_empty() => match UserId::new(user) {
                Ok(user) => {
                    let index = self.open(ConversationId::User(user.clone()));
                    self.select(index);
                    Some(Action::AddFriend(user))
                }
                Err(e) => {
                    self.status = Some(format!("/add: {e}"));
                    None
                }
            },
            ("group", gid) if !gid.is_empty() => match gid.parse::<i32>() {
                Ok(gid) => {
                    let index = self.open(ConversationId::Group(GroupId(gid)));
                    self.select(index);
                    None
                }
                Err(_) => {
                    self.status = Some(format!(
                        "/group: a group identifier is a number, not {gid:?}"
                    ));
                    None
                }
            },
            ("accept" | "decline", _) => {
                let Some(offer) = self.offers.pop_front() else {
                    self.status = Some("no file is offered".to_owned());
                    return None;
                };
                if name == "accept" {
                    self.receiving.push(Receiving {
                        transfer: offer.transfer,
                        name: offer.name,
                        done: 0,
                        total: offer.size,
                    });
                    Some(Action::Accept(offer.transfer))
                } else {
                    self.status = Some(format!("declined {}", offer.name));
                    Some(Action::Decline(offer.transfer))
                }
            }
            _ => {
                self.status = Some(format!(
                    "unknown command /{command}: try /add USER, /group GID, /accept, /decline, /quit"
                ));
                None
            }
        }
    }

    /// The status line: an offer to answer first, then transfers, then the last message.
    pub fn status_line(&self) -> String {
        if let Some(offer) = self.offers.front() {
            return format!(
                "{} offers {} ({}): /accept or /decline",
                offer.sender,
                offer.name,
                size(offer.size)
            );
        }
        if let Some(r) = self.receiving.first() {
            let percent = (r.done * 100).checked_div(r.total).unwrap_or(100);
            return format!(
                "receiving {} {percent}% ({} of {})",
                r.name,
                size(r.done),
                size(r.total)
            );
        }
        self.status.clone().unwrap_or_else(|| HELP.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::new(name).unwrap_or_else(|e| panic!("{e}"))
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn typed(app: &mut App, text: &str) -> Option<Action> {
        for c in text.chars() {
            assert_eq!(app.on_key(key(KeyCode::Char(c))), None);
        }
        app.on_key(key(KeyCode::Enter))
    }

    fn app_with_friends() -> App {
        let mut app = App::new(user("alice"), "127.0.0.1:7420");
        app.on_friends(&[user("bob"), user("carol")]);
        app
    }

    #[test]
    fn a_message_for_another_conversation_counts_as_unread() {
        let mut app = app_with_friends();
        app.on_message(&user("bob"), None, Timestamp(1), "hi".into(), true);
        app.on_message(&user("bob"), None, Timestamp(2), "there?".into(), true);
        let bob = &app.conversations()[1];
        assert_eq!(bob.id, ConversationId::User(user("bob")));
        assert_eq!(bob.unread, 2);
        assert_eq!(bob.lines.len(), 2);
    }

    #[test]
    fn switching_to_a_conversation_clears_its_unread_count() {
        let mut app = app_with_friends();
        app.on_message(&user("bob"), None, Timestamp(1), "hi".into(), true);
        app.on_key(key(KeyCode::Tab));
        assert_eq!(app.selected_index(), 1);
        assert_eq!(app.conversations()[1].unread, 0);
        // A message to the shown conversation is read at once.
        app.on_message(&user("bob"), None, Timestamp(2), "again".into(), true);
        assert_eq!(app.conversations()[1].unread, 0);
    }

    #[test]
    fn history_loaded_at_start_is_not_unread() {
        let mut app = app_with_friends();
        app.on_message(&user("bob"), None, Timestamp(1), "old".into(), false);
        assert_eq!(app.conversations()[1].unread, 0);
    }

    #[test]
    fn tab_and_the_arrow_keys_cycle_through_the_conversations() {
        let mut app = app_with_friends();
        app.on_key(key(KeyCode::Up));
        assert_eq!(app.selected_index(), 2);
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.selected_index(), 0);
        app.on_key(key(KeyCode::BackTab));
        assert_eq!(app.selected_index(), 2);
    }

    #[test]
    fn enter_asks_to_send_the_input_and_the_line_shows_once_sent() {
        let mut app = app_with_friends();
        app.select(1);
        let action = typed(&mut app, "hello bob");
        assert_eq!(
            action,
            Some(Action::Send {
                to: Target::User(user("bob")),
                text: "hello bob".into()
            })
        );
        assert_eq!(app.input(), "");
        // Not shown before the SDK took it: a failed send leaves no line.
        assert!(app.conversations()[1].lines.is_empty());

        app.on_sent(
            &Target::User(user("bob")),
            Timestamp(60_000),
            "hello bob".into(),
        );
        let shown = &app.conversations()[1].lines;
        assert_eq!(shown.len(), 1);
        assert_eq!(
            (
                shown[0].own,
                shown[0].sender.as_str(),
                shown[0].body.as_str()
            ),
            (true, "alice", "hello bob")
        );
        assert_eq!(app.conversations()[1].unread, 0);
    }

    #[test]
    fn enter_in_a_group_sends_to_the_group() {
        let mut app = app_with_friends();
        assert_eq!(typed(&mut app, "/group 7"), None);
        assert_eq!(
            app.selected().map(|c| c.id.clone()),
            Some(ConversationId::Group(GroupId(7)))
        );
        assert_eq!(
            typed(&mut app, "hi team"),
            Some(Action::Send {
                to: Target::Group(GroupId(7)),
                text: "hi team".into()
            })
        );
    }

    #[test]
    fn the_broadcasts_conversation_is_read_only_and_keeps_the_input() {
        let mut app = app_with_friends();
        assert_eq!(typed(&mut app, "hello"), None);
        assert_eq!(app.input(), "hello");
        assert!(app.status_line().contains("read-only"));
    }

    #[test]
    fn add_opens_the_conversation_and_asks_to_add_the_friend() {
        let mut app = App::new(user("alice"), "s");
        assert_eq!(
            typed(&mut app, "/add dave"),
            Some(Action::AddFriend(user("dave")))
        );
        assert_eq!(
            app.selected().map(|c| c.id.clone()),
            Some(ConversationId::User(user("dave")))
        );
    }

    #[test]
    fn quit_escape_and_ctrl_c_all_quit() {
        let mut app = App::new(user("alice"), "s");
        typed(&mut app, "/quit");
        assert!(app.should_quit());
        let mut app = App::new(user("alice"), "s");
        app.on_key(key(KeyCode::Esc));
        assert!(app.should_quit());
        let mut app = App::new(user("alice"), "s");
        app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(app.should_quit());
        assert_eq!(app.input(), "");
    }

    #[test]
    fn a_file_offer_is_asked_about_and_accepting_shows_progress_until_saved() {
        let mut app = App::new(user("alice"), "s");
        app.on_offer(OfferPrompt {
            transfer: TransferId(5),
            sender: user("bob"),
            name: "notes.txt".into(),
            size: 2048,
        });
        assert_eq!(
            app.status_line(),
            "bob offers notes.txt (2.0 KiB): /accept or /decline"
        );
        assert_eq!(
            typed(&mut app, "/accept"),
            Some(Action::Accept(TransferId(5)))
        );
        app.on_progress(TransferId(5), 1024, 2048);
        assert_eq!(
            app.status_line(),
            "receiving notes.txt 50% (1.0 KiB of 2.0 KiB)"
        );
        app.on_transfer_finished(
            TransferId(5),
            &TransferOutcome::Completed {
                path: "/tmp/notes.txt".into(),
            },
        );
        assert_eq!(app.status_line(), "saved /tmp/notes.txt");
    }

    #[test]
    fn declining_an_offer_produces_a_decline_action() {
        let mut app = App::new(user("alice"), "s");
        app.on_offer(OfferPrompt {
            transfer: TransferId(9),
            sender: user("bob"),
            name: "x".into(),
            size: 1,
        });
        assert_eq!(
            typed(&mut app, "/decline"),
            Some(Action::Decline(TransferId(9)))
        );
        assert!(app.offer().is_none());
        assert_eq!(typed(&mut app, "/decline"), None);
        assert_eq!(app.status_line(), "no file is offered");
    }

    #[test]
    fn group_messages_go_to_the_groups_conversation() {
        let mut app = App::new(user("alice"), "s");
        app.on_message(
            &user("bob"),
            Some(GroupId(3)),
            Timestamp(1),
            "hey".into(),
            true,
        );
        assert_eq!(app.conversations()[1].id, ConversationId::Group(GroupId(3)));
        assert_eq!(app.conversations()[1].unread, 1);
        app.on_broadcast("maintenance".into(), Timestamp(2));
        assert_eq!(app.conversations()[0].lines.len(), 1);
    }

    fn entry(
        id: i64,
        direction: Direction,
        sender: &str,
        peer: Option<&str>,
        body: &str,
    ) -> HistoryEntry {
        HistoryEntry {
            id,
            direction,
            sender: user(sender),
            peer: peer.map(user),
            group: None,
            sent_at: Timestamp(id * 1000),
            received_at: Timestamp(id * 1000),
            kind: vcom_client::MessageKind::Text,
            data: bytes::Bytes::copy_from_slice(body.as_bytes()),
            read: false,
        }
    }

    #[test]
    fn history_shows_both_sides_of_each_conversation_in_order() {
        let mut app = app_with_friends();
        let entries = [
            entry(1, Direction::Incoming, "bob", Some("bob"), "hi alice"),
            entry(2, Direction::Outgoing, "alice", Some("bob"), "hi bob"),
            entry(3, Direction::Outgoing, "alice", Some("dave"), "hi dave"),
            HistoryEntry {
                group: Some(GroupId(7)),
                peer: None,
                ..entry(4, Direction::Outgoing, "alice", None, "hi team")
            },
        ];
        assert_eq!(app.load_history(&entries, 0), 4);

        let lines = |id: ConversationId| -> Vec<(bool, String, String)> {
            app.conversations()
                .iter()
                .find(|c| c.id == id)
                .map(|c| {
                    c.lines
                        .iter()
                        .map(|l| (l.own, l.sender.clone(), l.body.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(
            lines(ConversationId::User(user("bob"))),
            vec![
                (false, "bob".into(), "hi alice".into()),
                (true, "alice".into(), "hi bob".into()),
            ]
        );
        assert_eq!(
            lines(ConversationId::User(user("dave"))),
            vec![(true, "alice".into(), "hi dave".into())]
        );
        assert_eq!(
            lines(ConversationId::Group(GroupId(7))),
            vec![(true, "alice".into(), "hi team".into())]
        );
        assert!(app.conversations().iter().all(|c| c.unread == 0));
    }

    #[test]
    fn only_messages_received_during_this_login_are_unread_after_loading() {
        let mut app = app_with_friends();
        let entries = [
            entry(1, Direction::Incoming, "bob", Some("bob"), "old"),
            entry(2, Direction::Outgoing, "alice", Some("bob"), "my answer"),
            entry(3, Direction::Incoming, "bob", Some("bob"), "new 1"),
            entry(4, Direction::Incoming, "bob", Some("bob"), "new 2"),
        ];
        app.load_history(&entries, 2);
        assert_eq!(app.conversations()[1].unread, 2);
        assert_eq!(app.conversations()[1].lines.len(), 4);
    }
}
