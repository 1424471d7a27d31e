//! The chat UI's state and its transitions, with no terminal and no network: keys and
//! server events go in, [`Action`]s and [`Load`] requests for the IO loop come out.
//!
//! Keeping this pure makes every rule (unread counts, switching, scrolling, search, what
//! Enter does) testable without a terminal. It must never do IO or read the clock; the
//! caller passes the time in, and reads the history when asked with a [`Load`].
//!
//! A conversation holds the newest part of its history that has been read so far: the
//! page shown at start, older pages added in front as the user scrolls back, and the
//! messages of this session appended behind.

use std::collections::{HashMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use jiff::tz::TimeZone;
use vcom_client::{
    ConversationSummary, Delivery, DeliveryState, Direction, GroupId, HistoryEntry, HistoryQuery,
    Timestamp, TransferId, TransferOutcome, UserId,
};

use crate::client::format::{body, printable, size};

/// How many messages one read of the history brings.
pub const PAGE: usize = 200;

/// A conversation: the broadcasts, a user, or a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConversationId {
    /// The administrator's broadcasts (read-only, not kept in the history).
    Broadcasts,
    /// Direct messages with a user.
    User(UserId),
    /// A group's messages.
    Group(GroupId),
}

impl ConversationId {
    /// How the conversation is named when its name is not known: a group by number.
    pub fn title(&self) -> String {
        match self {
            ConversationId::Broadcasts => "broadcasts".to_owned(),
            ConversationId::User(user) => user.to_string(),
            ConversationId::Group(group) => format!("group {group}"),
        }
    }

    /// The history query of this conversation; `None` for the broadcasts.
    pub fn query(&self) -> Option<HistoryQuery> {
        match self {
            ConversationId::Broadcasts => None,
            ConversationId::User(user) => Some(HistoryQuery::With(user.clone())),
            ConversationId::Group(group) => Some(HistoryQuery::Group(*group)),
        }
    }

    fn of_query(query: &HistoryQuery) -> Option<ConversationId> {
        match query {
            HistoryQuery::All => None,
            HistoryQuery::With(user) => Some(ConversationId::User(user.clone())),
            HistoryQuery::Group(group) => Some(ConversationId::Group(*group)),
        }
    }
}

/// Which message a line is: a history row, or a line of this session the history
/// row of which is not known here (a broadcast, a message being sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineKey {
    /// The history row.
    Row(i64),
    /// The n-th such line of this session.
    Live(u64),
}

/// One line of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// Which message.
    pub key: LineKey,
    /// Who wrote it (`*` for a broadcast).
    pub sender: String,
    /// When (the sender's clock for received messages, ours for our own).
    pub at: Timestamp,
    /// The text, or a note for an image.
    pub body: String,
    /// Written by this user.
    pub own: bool,
    /// What became of a message this device sent; `None` for any other line.
    pub delivery: Option<DeliveryState>,
    /// The client message id of a message sent in this session, to match the answer.
    pub client_id: Option<i64>,
}

/// A conversation and the part of its messages read so far, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Which conversation.
    pub id: ConversationId,
    /// Its messages read so far: a suffix of the history, then this session's.
    pub lines: Vec<ChatLine>,
    /// Received messages not yet seen (kept across restarts by the read marks).
    pub unread: usize,
    /// Messages below the view: 0 shows the newest.
    pub scroll: usize,
    /// History rows before this one are not read yet.
    cursor: i64,
    /// Every row of the history before `cursor` has been read (or there are none).
    complete: bool,
    /// A [`Load`] for this conversation is on its way.
    loading: bool,
    /// The newest history row of this conversation known.
    last_row: i64,
    /// How far the read mark is.
    read_through: i64,
}

impl Conversation {
    fn new(id: ConversationId) -> Conversation {
        Conversation {
            id,
            lines: Vec::new(),
            unread: 0,
            scroll: 0,
            cursor: 0,
            complete: true,
            loading: false,
            last_row: 0,
            read_through: 0,
        }
    }

    /// True once every older message has been read from the history.
    pub fn complete(&self) -> bool {
        self.complete
    }

    fn position(&self, key: LineKey) -> Option<usize> {
        self.lines.iter().position(|l| l.key == key)
    }
}

/// A read of the history the IO loop must make, answered with [`App::on_loaded`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    /// The conversation.
    pub conversation: ConversationId,
    /// Rows before this one.
    pub before: i64,
    /// Every row from this one on (to reach a search match), rather than a page.
    pub from: Option<i64>,
    /// At most this many rows, the newest, when `from` is `None`.
    pub limit: usize,
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

/// A file being received or sent, with its progress.
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

/// A file this user is sending (`/send`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sending {
    /// The number the IO loop gave it.
    pub id: u64,
    /// The file's name.
    pub name: String,
    /// Who gets it.
    pub to: UserId,
    /// Bytes handed to the server.
    pub done: u64,
    /// The file's size.
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
    /// Send a text message, then call [`App::on_sending`] and, with the answer,
    /// [`App::on_delivery`].
    Send {
        /// The recipient.
        to: Target,
        /// The message.
        text: String,
    },
    /// Send a file (`/send PATH`), reporting with [`App::on_send_started`],
    /// [`App::on_send_progress`] and [`App::on_send_finished`].
    SendFile {
        /// The recipient.
        to: UserId,
        /// The file, as typed.
        path: String,
    },
    /// Find the messages of a conversation holding `text`; answer with
    /// [`App::on_found`].
    Find {
        /// The conversation.
        conversation: ConversationId,
        /// What to look for.
        text: String,
    },
    /// Add a user to the friend list.
    AddFriend(UserId),
    /// Accept the offered file into the downloads directory.
    Accept(TransferId),
    /// Decline the offered file.
    Decline(TransferId),
}

/// A message arrived in a conversation that is not on screen: ring or notify, if the
/// user asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The conversation's title.
    pub conversation: String,
    /// Who wrote.
    pub sender: String,
}

/// The help shown in the status line when there is nothing else to say.
pub const HELP: &str = "Tab: switch  PgUp/PgDn: scroll  /find  /send  /help  /quit";

/// Every key and command, as the help screen (`/help`, F1) lists them.
pub const HELP_SCREEN: &[(&str, &str)] = &[
    ("Tab, Down", "next conversation"),
    ("Shift-Tab, Up", "previous conversation"),
    (
        "PageUp, PageDown",
        "scroll back and forth through the history",
    ),
    ("Home, End", "the first message, the newest message"),
    ("Enter", "send the typed line to the shown conversation"),
    ("Ctrl-P, Ctrl-N", "after /find: the older, the newer match"),
    ("Esc", "end a search or close this help; else quit"),
    ("Ctrl-C", "quit"),
    ("/add USER", "add a friend and open the conversation"),
    ("/group GID", "open a group's conversation"),
    ("/find TEXT", "find TEXT in the shown conversation"),
    ("/send PATH", "send a file to the shown user"),
    ("/accept, /decline", "answer the oldest file offer"),
    ("/help, F1", "this screen"),
    ("/quit", "quit"),
];

/// A search in one conversation, from `/find`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// The conversation searched.
    pub conversation: ConversationId,
    /// What was looked for.
    pub text: String,
    /// The matching lines, oldest first.
    pub matches: Vec<LineKey>,
    /// The match shown.
    pub current: usize,
}

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
    sending: Vec<Sending>,
    status: Option<String>,
    quit: bool,
    help: bool,
    search: Option<Search>,
    /// Rows of the message view, for paging.
    view_rows: usize,
    /// Home was pressed: read the history back to its start.
    to_top: bool,
    /// The highest history row when the chat started: newer rows arrive as events.
    start_row: i64,
    next_live: u64,
    time_zone: TimeZone,
    alerts: Vec<Alert>,
    read_marks: Vec<(HistoryQuery, i64)>,
    group_names: HashMap<GroupId, String>,
    /// History rows sent again in this session, with their client message ids.
    resent: HashMap<i64, i64>,
}

impl App {
    /// A new UI for `me` on `server`, showing only the broadcasts conversation, with
    /// times in UTC until [`App::set_time_zone`].
    pub fn new(me: UserId, server: impl Into<String>) -> App {
        App {
            me,
            server: server.into(),
            conversations: vec![Conversation::new(ConversationId::Broadcasts)],
            selected: 0,
            input: String::new(),
            offers: VecDeque::new(),
            receiving: Vec::new(),
            sending: Vec::new(),
            status: None,
            quit: false,
            help: false,
            search: None,
            view_rows: 20,
            to_top: false,
            start_row: 0,
            next_live: 0,
            time_zone: TimeZone::UTC,
            alerts: Vec::new(),
            read_marks: Vec::new(),
            group_names: HashMap::new(),
            resent: HashMap::new(),
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

    /// True while the help screen is shown.
    pub fn help_shown(&self) -> bool {
        self.help
    }

    /// The search in progress, if any.
    pub fn search(&self) -> Option<&Search> {
        self.search.as_ref()
    }

    /// The line the search shows, if the shown conversation is searched.
    pub fn current_match(&self) -> Option<LineKey> {
        let search = self.search.as_ref()?;
        let shown = self.selected()?;
        (search.conversation == shown.id)
            .then(|| search.matches.get(search.current).copied())
            .flatten()
    }

    /// The time zone times are shown in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.time_zone
    }

    /// Shows times in `time_zone` (the system's, or `TZ`).
    pub fn set_time_zone(&mut self, time_zone: TimeZone) {
        self.time_zone = time_zone;
    }

    /// The message view is `rows` high: a page is that many messages.
    pub fn set_view_rows(&mut self, rows: usize) {
        self.view_rows = rows.max(1);
    }

    /// Sets the status line's message (results of actions, errors).
    pub fn set_status(&mut self, status: impl Into<String>) {
        self.status = Some(status.into());
    }

    /// The messages that arrived in conversations not on screen since the last call.
    pub fn take_alerts(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.alerts)
    }

    /// The read marks to save in the history since the last call.
    pub fn take_read_marks(&mut self) -> Vec<(HistoryQuery, i64)> {
        std::mem::take(&mut self.read_marks)
    }

    /// The index of a conversation, added at the end of the list if new.
    pub fn open(&mut self, id: ConversationId) -> usize {
        if let Some(i) = self.conversations.iter().position(|c| c.id == id) {
            return i;
        }
        self.conversations.push(Conversation::new(id));
        self.conversations.len() - 1
    }

    /// Shows the conversation at `index` and marks it read.
    pub fn select(&mut self, index: usize) {
        if index < self.conversations.len() {
            if index != self.selected {
                self.to_top = false;
            }
            self.selected = index;
            self.mark_read(index);
        }
    }

    /// The shown conversation has been seen through its newest message.
    fn mark_read(&mut self, index: usize) {
        let Some(conversation) = self.conversations.get_mut(index) else {
            return;
        };
        conversation.unread = 0;
        if conversation.last_row > conversation.read_through {
            conversation.read_through = conversation.last_row;
            if let Some(query) = conversation.id.query() {
                self.read_marks.push((query, conversation.last_row));
            }
        }
    }

    /// How a conversation is named on screen: a group by its name when the server
    /// gave one, else by number.
    pub fn title(&self, id: &ConversationId) -> String {
        match id {
            ConversationId::Group(group) => match self.group_names.get(group) {
                Some(name) => name.clone(),
                None => id.title(),
            },
            other => other.title(),
        }
    }

    /// The groups this user is a member of, with their names: each has a conversation.
    pub fn on_groups(&mut self, groups: &[(GroupId, String)]) {
        for (group, name) in groups {
            self.group_names.insert(*group, printable(name));
            self.open(ConversationId::Group(*group));
        }
    }

    /// Makes sure every friend has a conversation.
    pub fn on_friends(&mut self, friends: &[UserId]) {
        for friend in friends {
            self.open(ConversationId::User(friend.clone()));
        }
    }

    /// The conversations of the history (newest first) with their unread counts, when
    /// the chat starts: their messages are read from the history page by page as they
    /// are shown. `start_row` is the highest history row at start; newer rows come as
    /// events.
    pub fn on_conversations(&mut self, summaries: &[ConversationSummary], start_row: i64) {
        self.start_row = start_row;
        for summary in summaries {
            let Some(id) = ConversationId::of_query(&summary.query) else {
                continue;
            };
            let index = self.open(id);
            if let Some(c) = self.conversations.get_mut(index) {
                c.unread = usize::try_from(summary.unread).unwrap_or(usize::MAX);
                c.cursor = start_row.saturating_add(1);
                c.complete = false;
                c.last_row = summary.last_id;
                // Where the mark is exactly does not matter here, only whether showing the
                // conversation moves it: it does when something is unread.
                c.read_through = if summary.unread == 0 {
                    summary.last_id
                } else {
                    0
                };
            }
        }
    }

    /// The next read of the history the shown conversation needs, if any: its first
    /// page, an older page as the view nears the oldest message read, or every older
    /// page after Home. At most one read per conversation is on its way at a time.
    pub fn next_load(&mut self) -> Option<Load> {
        let rows = self.view_rows;
        let to_top = self.to_top;
        let target = self.search_target();
        let c = self.conversations.get_mut(self.selected)?;
        if c.complete || c.loading {
            return None;
        }
        let shown_top = c.lines.len().saturating_sub(c.scroll + rows);
        let from = match target {
            Some(LineKey::Row(row)) if row < c.cursor => Some(row),
            _ => None,
        };
        if from.is_none() && !to_top && shown_top > rows {
            return None;
        }
        c.loading = true;
        Some(Load {
            conversation: c.id.clone(),
            before: c.cursor,
            from,
            limit: if to_top { PAGE * 10 } else { PAGE },
        })
    }

    /// The rows a [`Load`] read, oldest first, go in front of the conversation.
    pub fn on_loaded(&mut self, load: &Load, entries: &[HistoryEntry]) {
        let Some(index) = self
            .conversations
            .iter()
            .position(|c| c.id == load.conversation)
        else {
            return;
        };
        let lines: Vec<ChatLine> = entries.iter().map(|e| self.history_line(e)).collect();
        // A search match waiting for these rows is shown once they are in.
        let jump = self.search_target().is_some();
        let Some(c) = self.conversations.get_mut(index) else {
            return;
        };
        c.loading = false;
        c.complete = load.from.is_none() && entries.len() < load.limit;
        c.cursor = match (load.from, entries.first()) {
            (Some(from), _) => from,
            (None, Some(first)) => first.id,
            (None, None) => c.cursor,
        };
        if let Some(first) = entries.first() {
            c.cursor = c.cursor.min(first.id);
        }
        c.lines.splice(0..0, lines);
        if self.to_top && c.complete {
            c.scroll = c.lines.len().saturating_sub(1);
        }
        if c.complete {
            self.to_top = false;
        }
        if jump {
            self.show_match();
        }
    }

    /// A history read failed: let the user try again by scrolling.
    pub fn on_load_failed(&mut self, load: &Load, error: &str) {
        if let Some(c) = self
            .conversations
            .iter_mut()
            .find(|c| c.id == load.conversation)
        {
            c.loading = false;
            c.complete = true;
        }
        self.status = Some(format!("cannot read the history: {error}"));
    }

    fn history_line(&self, e: &HistoryEntry) -> ChatLine {
        ChatLine {
            key: LineKey::Row(e.id),
            sender: e.sender.to_string(),
            at: e.sent_at,
            body: body(e.kind, &e.data),
            own: e.direction == Direction::Outgoing,
            delivery: e.delivery,
            client_id: self.resent.get(&e.id).copied(),
        }
    }

    fn live_key(&mut self) -> LineKey {
        self.next_live += 1;
        LineKey::Live(self.next_live)
    }

    /// A message arrived during this session, stored in the history as row
    /// `history_id`; it counts as unread unless its conversation is on screen.
    pub fn on_message(
        &mut self,
        sender: &UserId,
        group: Option<GroupId>,
        at: Timestamp,
        body: String,
        history_id: i64,
    ) {
        let id = match group {
            Some(group) => ConversationId::Group(group),
            None => ConversationId::User(sender.clone()),
        };
        let line = ChatLine {
            key: LineKey::Row(history_id),
            sender: sender.to_string(),
            at,
            body,
            own: *sender == self.me,
            delivery: None,
            client_id: None,
        };
        let title = self.title(&id);
        let index = self.push(id, line);
        if let Some(c) = self.conversations.get_mut(index) {
            c.last_row = c.last_row.max(history_id);
        }
        if index == self.selected {
            self.mark_read(index);
        } else if let Some(c) = self.conversations.get_mut(index) {
            c.unread += 1;
            self.alerts.push(Alert {
                conversation: title,
                sender: sender.to_string(),
            });
        }
    }

    /// A message this user is sending to `to` at `at` under `client_id`: shown at once,
    /// pending until [`App::on_delivery`].
    pub fn on_sending(&mut self, to: &Target, at: Timestamp, body: String, client_id: i64) {
        let id = match to {
            Target::User(user) => ConversationId::User(user.clone()),
            Target::Group(group) => ConversationId::Group(*group),
        };
        let line = ChatLine {
            key: self.live_key(),
            sender: self.me.to_string(),
            at,
            body,
            own: true,
            delivery: Some(DeliveryState::Pending),
            client_id: Some(client_id),
        };
        self.push(id, line);
    }

    /// The message of history row `row`, pending since an earlier session, is sent again
    /// under `client_id`: its line (now, or once read from the history) takes the
    /// answer.
    pub fn on_resending(&mut self, row: i64, client_id: i64) {
        self.resent.insert(row, client_id);
        for c in &mut self.conversations {
            for line in &mut c.lines {
                if line.key == LineKey::Row(row) {
                    line.client_id = Some(client_id);
                    line.delivery = Some(DeliveryState::Pending);
                }
            }
        }
    }

    /// The server's answer for the message sent under `client_id`.
    pub fn on_delivery(&mut self, client_id: i64, delivery: Delivery) {
        let line = self
            .conversations
            .iter_mut()
            .flat_map(|c| c.lines.iter_mut().rev())
            .find(|l| l.client_id == Some(client_id));
        if let Some(line) = line {
            line.delivery = Some(delivery.into());
        }
        if let Delivery::Refused(outcome) = delivery {
            self.status = Some(format!("not stored: {outcome}"));
        }
    }

    /// The message sent under `client_id` was not sent at all (too long, say): its line
    /// goes, as the history never had it.
    pub fn on_send_failed(&mut self, client_id: i64, why: &str) {
        for c in &mut self.conversations {
            c.lines.retain(|l| l.client_id != Some(client_id));
        }
        self.status = Some(format!("not sent: {why}"));
    }

    /// A broadcast from the administrator arrived at `at`.
    pub fn on_broadcast(&mut self, text: String, at: Timestamp) {
        let line = ChatLine {
            key: self.live_key(),
            sender: "*".to_owned(),
            at,
            body: text,
            own: false,
            delivery: None,
            client_id: None,
        };
        let index = self.push(ConversationId::Broadcasts, line);
        if index != self.selected
            && let Some(c) = self.conversations.get_mut(index)
        {
            c.unread += 1;
            self.alerts.push(Alert {
                conversation: ConversationId::Broadcasts.title(),
                sender: "*".to_owned(),
            });
        }
    }

    /// Appends a line; a conversation scrolled back keeps its view still.
    fn push(&mut self, id: ConversationId, line: ChatLine) -> usize {
        let index = self.open(id);
        if let Some(c) = self.conversations.get_mut(index) {
            c.lines.push(line);
            if c.scroll > 0 {
                c.scroll += 1;
            }
        }
        index
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

    /// A file (`/send`) started going to `to` as number `id`.
    pub fn on_send_started(&mut self, id: u64, to: UserId, name: String, total: u64) {
        self.sending.push(Sending {
            id,
            name,
            to,
            done: 0,
            total,
        });
    }

    /// Bytes of a file being sent were handed to the server.
    pub fn on_send_progress(&mut self, id: u64, done: u64, total: u64) {
        if let Some(s) = self.sending.iter_mut().find(|s| s.id == id) {
            s.done = done;
            s.total = total;
        }
    }

    /// A file being sent is done (`Ok`) or not (`Err` with why).
    pub fn on_send_finished(&mut self, id: u64, result: Result<(), String>) {
        let Some(i) = self.sending.iter().position(|s| s.id == id) else {
            return;
        };
        let s = self.sending.remove(i);
        self.status = Some(match result {
            Ok(()) => format!("sent {} to {} ({})", s.name, s.to, size(s.total)),
            Err(why) => format!("{}: not sent: {why}", s.name),
        });
    }

    /// The rows of the shown conversation holding what `/find` looked for, oldest first.
    pub fn on_found(&mut self, conversation: ConversationId, text: String, rows: &[i64]) {
        let Some(c) = self.conversations.iter().find(|c| c.id == conversation) else {
            return;
        };
        // Rows up to the start come from the history; this session's lines from here.
        let needle = text.to_ascii_lowercase();
        let mut matches: Vec<LineKey> = rows
            .iter()
            .filter(|&&row| row <= self.start_row)
            .map(|&row| LineKey::Row(row))
            .collect();
        matches.extend(
            c.lines
                .iter()
                .filter(|l| match l.key {
                    LineKey::Row(row) => row > self.start_row,
                    LineKey::Live(_) => true,
                })
                .filter(|l| l.body.to_ascii_lowercase().contains(&needle))
                .map(|l| l.key),
        );
        if matches.is_empty() {
            self.search = None;
            self.status = Some(format!("/find: no message holds {text:?}"));
            return;
        }
        let current = matches.len() - 1;
        self.search = Some(Search {
            conversation,
            text,
            matches,
            current,
        });
        self.show_match();
    }

    /// The match to show when it is not read from the history yet.
    fn search_target(&self) -> Option<LineKey> {
        let key = self.current_match()?;
        let c = self.selected()?;
        c.position(key).is_none().then_some(key)
    }

    /// Scrolls the shown conversation to the current match, if it has been read.
    fn show_match(&mut self) {
        let Some(key) = self.current_match() else {
            return;
        };
        let rows = self.view_rows;
        let (index, total) = match self.search.as_ref() {
            Some(s) => (s.current + 1, s.matches.len()),
            None => return,
        };
        let Some(c) = self.conversations.get_mut(self.selected) else {
            return;
        };
        if let Some(at) = c.position(key) {
            // The match in the middle of the view.
            let below = c.lines.len() - 1 - at;
            c.scroll = below.saturating_sub(rows / 2);
        }
        self.status = Some(format!(
            "match {index} of {total}: Ctrl-P older, Ctrl-N newer, Esc ends the search"
        ));
    }

    /// Moves to the older (`-1`) or newer (`+1`) match.
    fn step_match(&mut self, older: bool) {
        let Some(search) = self.search.as_mut() else {
            self.status = Some("no search: /find TEXT".to_owned());
            return;
        };
        if older {
            search.current = search.current.saturating_sub(1);
        } else if search.current + 1 < search.matches.len() {
            search.current += 1;
        }
        self.show_match();
    }

    fn scroll_by(&mut self, up: bool, by: usize) {
        let Some(c) = self.conversations.get_mut(self.selected) else {
            return;
        };
        let max = c.lines.len().saturating_sub(1);
        c.scroll = if up {
            (c.scroll + by).min(max)
        } else {
            c.scroll.saturating_sub(by)
        };
        if c.scroll == 0 {
            self.mark_read(self.selected);
        }
    }

    /// Handles a key press; returns what the IO loop must do, if anything.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Action> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if self.help {
            // Any key closes the help; only Ctrl-C also quits.
            self.help = false;
            if ctrl && key.code == KeyCode::Char('c') {
                self.quit = true;
            }
            return None;
        }
        let page = self.view_rows.saturating_sub(1).max(1);
        match key.code {
            KeyCode::Char('c') if ctrl => {
                self.quit = true;
                None
            }
            KeyCode::Char('p') if ctrl => {
                self.step_match(true);
                None
            }
            KeyCode::Char('n') if ctrl => {
                self.step_match(false);
                None
            }
            KeyCode::Esc => {
                if self.search.take().is_some() {
                    self.status = None;
                } else {
                    self.quit = true;
                }
                None
            }
            KeyCode::F(1) => {
                self.help = true;
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
            KeyCode::PageUp => {
                self.scroll_by(true, page);
                None
            }
            KeyCode::PageDown => {
                self.scroll_by(false, page);
                None
            }
            KeyCode::Home => {
                self.to_top = true;
                self.scroll_by(true, usize::MAX / 2);
                None
            }
            KeyCode::End => {
                self.to_top = false;
                self.scroll_by(false, usize::MAX / 2);
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
    /// The line is not shown yet: the IO loop calls [`App::on_sending`] once it has
    /// named the message, and the line shows pending until the server answers.
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
        // Sending returns to the newest message.
        if let Some(c) = self.conversations.get_mut(self.selected) {
            c.scroll = 0;
        }
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
            ("help" | "h" | "?", _) => {
                self.help = true;
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
            ("find", text) if !text.is_empty() => {
                let conversation = self.selected()?.id.clone();
                if conversation == ConversationId::Broadcasts {
                    self.status = Some("/find: pick a friend or a group first".to_owned());
                    return None;
                }
                Some(Action::Find {
                    conversation,
                    text: text.to_owned(),
                })
            }
            ("send", path) if !path.is_empty() => match self.selected().map(|c| &c.id) {
                Some(ConversationId::User(user)) => Some(Action::SendFile {
                    to: user.clone(),
                    path: path.to_owned(),
                }),
                _ => {
                    self.status = Some("/send: files go to a user: pick one first".to_owned());
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
                self.status = Some(format!("unknown command /{command}: /help lists them"));
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
        if let Some(s) = self.sending.first() {
            let percent = (s.done * 100).checked_div(s.total).unwrap_or(100);
            return format!(
                "sending {} to {} {percent}% ({} of {})",
                s.name,
                s.to,
                size(s.done),
                size(s.total)
            );
        }
        self.status.clone().unwrap_or_else(|| HELP.to_owned())
    }
}

#[cfg(test)]
mod tests;
