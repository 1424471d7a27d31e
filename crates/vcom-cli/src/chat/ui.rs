//! Drawing the [`App`] with ratatui: conversations on the left, messages on the right
//! (local times, a row for each new date, a mark after each sent message), a status
//! line and the input line at the bottom; the help screen over the messages. Pure
//! rendering: no IO, no state changes, so it is tested on ratatui's `TestBackend`. Fits
//! an 80x24 terminal. Only the lines in view are laid out, however long the history.

use std::collections::VecDeque;

use jiff::tz::TimeZone;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph};
use vcom_client::{DeliveryState, Timestamp};

use super::app::{App, ChatLine, ConversationId, HELP_SCREEN, LineKey};
use crate::client::format::delivery_mark;

/// Width of the conversations column, borders included.
const LIST_WIDTH: u16 = 24;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let [main, status, input] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(3),
    ])
    .areas(frame.area());
    let [list, messages] =
        Layout::horizontal([Constraint::Length(LIST_WIDTH), Constraint::Min(10)]).areas(main);
    draw_conversations(frame, app, list);
    if app.help_shown() {
        draw_help(frame, messages);
    } else {
        draw_messages(frame, app, messages);
    }
    draw_status(frame, app, status);
    draw_input(frame, app, input);
}

fn draw_conversations(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let items: Vec<ListItem<'_>> = app
        .conversations()
        .iter()
        .map(|c| {
            let mut spans = vec![Span::raw(app.title(&c.id))];
            if c.unread > 0 {
                spans.push(Span::styled(
                    format!(" ({})", c.unread),
                    Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
                ));
            }
            ListItem::new(Line::from(spans))
        })
        .collect();
    let title = format!(" {}@{} ", app.me(), app.server());
    let list = List::new(items)
        .block(Block::new().borders(Borders::ALL).title(title))
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD))
        .highlight_symbol("> ");
    let mut state = ListState::default().with_selected(Some(app.selected_index()));
    frame.render_stateful_widget(list, area, &mut state);
}

fn draw_messages(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let Some(c) = app.selected() else {
        return;
    };
    let mut title = format!(" {} ", app.title(&c.id));
    if c.scroll > 0 {
        title.push_str(&format!("(\u{2193} {} newer: End) ", c.scroll));
    }
    let block = Block::new().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width.max(1));
    let height = usize::from(inner.height);
    if c.lines.is_empty() {
        let hint = match c.id {
            ConversationId::Broadcasts => "No broadcasts yet.",
            _ if !c.complete() => "Reading the history\u{2026}",
            _ => "No messages yet. Type below and press Enter.",
        };
        let hint = Line::styled(hint, Style::new().fg(Color::DarkGray));
        frame.render_widget(Paragraph::new(vec![hint]), inner);
        return;
    }
    let view = View {
        lines: &c.lines,
        width,
        tz: app.time_zone(),
        current: app.current_match(),
    };
    let rows = view.rows(c.lines.len().saturating_sub(c.scroll), height);
    frame.render_widget(Paragraph::new(rows), inner);
}

/// The rows of a conversation's lines, laid out only for the lines in view.
struct View<'a> {
    lines: &'a [ChatLine],
    width: usize,
    tz: &'a TimeZone,
    /// The search match to highlight.
    current: Option<LineKey>,
}

impl View<'_> {
    /// At most `height` rows ending with line `end - 1` at the bottom; if the lines up
    /// to there do not fill the view, the following ones fill it.
    fn rows(&self, end: usize, height: usize) -> Vec<Line<'static>> {
        let end = end.clamp(1, self.lines.len().max(1));
        let mut rows: VecDeque<Line<'static>> = VecDeque::new();
        let mut i = end;
        while i > 0 && rows.len() < height {
            i -= 1;
            for row in self.line_rows(i).into_iter().rev() {
                rows.push_front(row);
            }
        }
        while rows.len() > height {
            rows.pop_front();
        }
        let mut next = end;
        while rows.len() < height && next < self.lines.len() {
            rows.extend(self.line_rows(next));
            next += 1;
        }
        rows.truncate(height);
        rows.into()
    }

    /// Line `i`'s rows, after a row with the date when it is not the date of the line
    /// before.
    fn line_rows(&self, i: usize) -> Vec<Line<'static>> {
        let Some(line) = self.lines.get(i) else {
            return Vec::new();
        };
        let date = local(self.tz, line.at).date();
        let new_day = match i.checked_sub(1).and_then(|p| self.lines.get(p)) {
            Some(before) => local(self.tz, before.at).date() != date,
            None => true,
        };
        let mut rows = Vec::new();
        if new_day {
            rows.push(Line::styled(
                format!("\u{2500}\u{2500} {} \u{2500}\u{2500}", day(date)),
                Style::new().fg(Color::DarkGray),
            ));
        }
        let highlight = self.current == Some(line.key);
        rows.extend(wrap(line, self.width, self.tz, highlight));
        rows
    }
}

/// A protocol timestamp on the wall clock of `tz`.
fn local(tz: &TimeZone, at: Timestamp) -> jiff::civil::DateTime {
    let ts = jiff::Timestamp::from_millisecond(at.0).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    tz.to_datetime(ts)
}

/// `Wed 2024-05-01`.
fn day(date: jiff::civil::Date) -> String {
    let weekday = match date.weekday() {
        jiff::civil::Weekday::Monday => "Mon",
        jiff::civil::Weekday::Tuesday => "Tue",
        jiff::civil::Weekday::Wednesday => "Wed",
        jiff::civil::Weekday::Thursday => "Thu",
        jiff::civil::Weekday::Friday => "Fri",
        jiff::civil::Weekday::Saturday => "Sat",
        jiff::civil::Weekday::Sunday => "Sun",
    };
    format!(
        "{weekday} {:04}-{:02}-{:02}",
        date.year(),
        date.month(),
        date.day()
    )
}

/// One message as screen rows of at most `width` characters:
/// `12:03 alice: text  ✓ stored`, the time local.
fn wrap(line: &ChatLine, width: usize, tz: &TimeZone, highlight: bool) -> Vec<Line<'static>> {
    let sender_style = if line.own {
        Style::new().fg(Color::Green).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
    };
    let body_style = if highlight {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new()
    };
    let t = local(tz, line.at);
    let time = format!("{:02}:{:02} ", t.hour(), t.minute());
    let sender = format!("{}: ", line.sender);
    let mut chars: Vec<(char, Style)> = Vec::new();
    chars.extend(time.chars().map(|c| (c, Style::new().fg(Color::DarkGray))));
    chars.extend(sender.chars().map(|c| (c, sender_style)));
    chars.extend(
        line.body
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .map(|c| (c, body_style)),
    );
    if let Some(state) = line.delivery {
        let style = match state {
            DeliveryState::Refused(_) => Style::new().fg(Color::Red),
            DeliveryState::Stored => Style::new().fg(Color::Green),
            DeliveryState::Pending | DeliveryState::Unconfirmed => Style::new().fg(Color::DarkGray),
        };
        let mark = format!("  {}", delivery_mark(state));
        chars.extend(mark.chars().map(|c| (c, style)));
    }
    chars
        .chunks(width)
        .map(|chunk| {
            let mut spans: Vec<Span<'static>> = Vec::new();
            let mut text = String::new();
            let mut style = chunk.first().map(|(_, s)| *s).unwrap_or_default();
            for (c, s) in chunk {
                if *s != style {
                    spans.push(Span::styled(std::mem::take(&mut text), style));
                    style = *s;
                }
                text.push(*c);
            }
            spans.push(Span::styled(text, style));
            Line::from(spans)
        })
        .collect()
}

/// The help screen over the messages: every key and command.
fn draw_help(frame: &mut Frame<'_>, area: Rect) {
    let block = Block::new()
        .borders(Borders::ALL)
        .title(" help: any key closes it ");
    let inner = block.inner(area);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);
    let rows: Vec<Line<'_>> = HELP_SCREEN
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{keys:<18}"),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(rows), inner);
}

fn draw_status(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let style = if app.offer().is_some() {
        Style::new().fg(Color::Black).bg(Color::Yellow)
    } else {
        Style::new().fg(Color::Gray)
    };
    frame.render_widget(Paragraph::new(app.status_line()).style(style), area);
}

fn draw_input(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let title = match app.selected().map(|c| &c.id) {
        Some(ConversationId::Broadcasts) | None => {
            " /add USER, /group GID or Tab to pick ".to_owned()
        }
        Some(id) => format!(" to {} ", app.title(id)),
    };
    let block = Block::new().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // Keep the end of a long input (where the cursor is) in view.
    let width = usize::from(inner.width.saturating_sub(1));
    let input: Vec<char> = app.input().chars().collect();
    let visible: String = input[input.len().saturating_sub(width)..].iter().collect();
    let cursor_x = inner.x + u16::try_from(visible.chars().count()).unwrap_or(0);
    frame.render_widget(Paragraph::new(visible), inner);
    frame.set_cursor_position(Position::new(cursor_x, inner.y));
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use vcom_client::{
        ConversationSummary, Delivery, Direction, GroupId, HistoryEntry, HistoryQuery, MessageKind,
        SendOutcome, TransferId, UserId,
    };

    use super::*;
    use crate::chat::app::{OfferPrompt, Target};

    fn user(name: &str) -> UserId {
        UserId::new(name).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Renders `app` into an 80x24 test terminal and returns the screen as lines.
    fn screen(app: &App) -> Vec<String> {
        let mut terminal =
            Terminal::new(TestBackend::new(80, 24)).unwrap_or_else(|e| panic!("{e}"));
        terminal
            .draw(|frame| draw(frame, app))
            .unwrap_or_else(|e| panic!("{e}"));
        let buffer = terminal.backend().buffer();
        (0..24)
            .map(|y| (0..80).map(|x| buffer[(x, y)].symbol()).collect::<String>())
            .collect()
    }

    fn sample() -> App {
        let mut app = App::new(user("alice"), "127.0.0.1:7420");
        app.on_friends(&[user("bob"), user("carol")]);
        // 12:03 UTC.
        let noon = Timestamp(1_714_564_980_000);
        app.on_message(&user("bob"), None, noon, "hi alice!".into(), 1);
        app.on_message(&user("carol"), None, noon, "lunch?".into(), 2);
        app.on_message(&user("carol"), None, noon, "at 1?".into(), 3);
        app.on_message(&user("dave"), Some(GroupId(3)), noon, "standup".into(), 4);
        app.select(1);
        app
    }

    /// Bob's conversation read from a history of `entries`, shown.
    fn with_history(entries: &[HistoryEntry]) -> App {
        let mut app = App::new(user("alice"), "127.0.0.1:7420");
        app.on_friends(&[user("bob")]);
        let last = entries.last().map_or(0, |e| e.id);
        app.on_conversations(
            &[ConversationSummary {
                query: HistoryQuery::With(user("bob")),
                last_id: last,
                unread: 0,
            }],
            last,
        );
        app.select(1);
        app.set_view_rows(16);
        while let Some(load) = app.next_load() {
            let rows: Vec<HistoryEntry> = entries
                .iter()
                .filter(|e| e.id < load.before)
                .cloned()
                .collect();
            let rows = rows[rows.len().saturating_sub(load.limit)..].to_vec();
            app.on_loaded(&load, &rows);
        }
        app
    }

    fn entry(
        id: i64,
        direction: Direction,
        sender: &str,
        at: Timestamp,
        body: &str,
    ) -> HistoryEntry {
        HistoryEntry {
            id,
            direction,
            sender: user(sender),
            peer: Some(user("bob")),
            group: None,
            sent_at: at,
            received_at: at,
            kind: MessageKind::Text,
            data: Bytes::copy_from_slice(body.as_bytes()),
            read: false,
            delivery: (direction == Direction::Outgoing).then_some(DeliveryState::Stored),
        }
    }

    #[test]
    fn the_screen_shows_conversations_with_unread_counts_and_the_selected_messages() {
        let mut app = sample();
        for c in "see you".chars() {
            app.on_key(crossterm::event::KeyEvent::from(
                crossterm::event::KeyCode::Char(c),
            ));
        }
        let lines = screen(&app);
        let text = lines.join("\n");
        assert!(lines[0].contains("alice@127.0.0.1:7420"), "{text}");
        assert!(lines[0].contains(" bob "), "{text}");
        assert!(text.contains("broadcasts"));
        assert!(text.contains("> bob"));
        assert!(text.contains("carol (2)"));
        assert!(text.contains("group 3 (1)"));
        assert!(
            text.contains("Wed 2024-05-01"),
            "the date before the first line:\n{text}"
        );
        assert!(text.contains("12:03 bob: hi alice!"), "{text}");
        assert!(lines[20].contains("Tab: switch"), "{text}");
        assert!(lines[21].contains("to bob"), "{text}");
        assert!(lines[22].contains("see you"), "{text}");
    }

    #[test]
    fn the_newest_messages_stay_in_view_and_long_ones_wrap() {
        let mut app = App::new(user("alice"), "s");
        app.on_friends(&[user("bob")]);
        for i in 0..40 {
            app.on_message(&user("bob"), None, Timestamp(0), format!("message {i}"), i);
        }
        let long = "x".repeat(120);
        app.on_message(&user("bob"), None, Timestamp(0), long, 40);
        app.select(1);
        let text = screen(&app).join("\n");
        assert!(text.contains("message 39"), "{text}");
        assert!(!text.contains("message 0 "), "{text}");
        assert!(text.contains(&"x".repeat(40)), "{text}");
    }

    #[test]
    fn a_file_offer_is_shown_in_the_status_line() {
        let mut app = sample();
        app.on_offer(OfferPrompt {
            transfer: TransferId(1),
            sender: user("bob"),
            name: "photo.jpg".into(),
            size: 3 * 1024 * 1024,
        });
        let lines = screen(&app);
        assert!(
            lines[20].contains("bob offers photo.jpg (3.0 MiB): /accept or /decline"),
            "{}",
            lines.join("\n")
        );
    }

    #[test]
    fn after_a_restart_the_users_own_earlier_lines_are_on_screen_between_the_replies() {
        let at = |minute: i64| Timestamp(1_714_564_800_000 + minute * 60_000);
        let app = with_history(&[
            entry(1, Direction::Incoming, "bob", at(1), "hi alice"),
            entry(2, Direction::Outgoing, "alice", at(2), "hi bob, all well?"),
            entry(3, Direction::Incoming, "bob", at(3), "yes!"),
        ]);
        let shown = screen(&app);
        let text = shown.join("\n");
        let rows: Vec<usize> = [
            "12:01 bob: hi alice",
            "12:02 alice: hi bob, all well?  ✓ stored",
            "12:03 bob: yes!",
        ]
        .iter()
        .map(|line| {
            shown
                .iter()
                .position(|row| row.contains(line))
                .unwrap_or_else(|| panic!("{line:?} is not shown:\n{text}"))
        })
        .collect();
        assert!(
            rows.windows(2).all(|w| w[0] < w[1]),
            "out of order:\n{text}"
        );
    }

    #[test]
    fn each_sent_line_carries_its_delivery_mark() {
        let mut app = sample();
        let bob = Target::User(user("bob"));
        let noon = Timestamp(1_714_564_980_000);
        app.on_sending(&bob, noon, "one".into(), 1);
        app.on_sending(&bob, noon, "two".into(), 2);
        app.on_sending(&bob, noon, "three".into(), 3);
        app.on_delivery(1, Delivery::Stored);
        app.on_delivery(3, Delivery::Refused(SendOutcome::UnknownRecipient));
        let text = screen(&app).join("\n");
        assert!(text.contains("alice: one  ✓ stored"), "{text}");
        assert!(text.contains("alice: two  pending …"), "{text}");
        assert!(
            text.contains("alice: three  ✗ refused: no such user"),
            "{text}"
        );
    }

    #[test]
    fn times_are_local_and_a_row_names_each_new_date() {
        // 23:30 UTC on Tuesday 30 April, 00:30 UTC on 1 May.
        let late = Timestamp(1_714_519_800_000);
        let later = Timestamp(1_714_523_400_000);
        let history = [
            entry(1, Direction::Incoming, "bob", late, "still up?"),
            entry(2, Direction::Incoming, "bob", later, "good night"),
        ];
        let mut app = with_history(&history);
        let text = screen(&app).join("\n");
        assert!(text.contains("Tue 2024-04-30"), "{text}");
        assert!(text.contains("23:30 bob: still up?"), "{text}");
        assert!(text.contains("Wed 2024-05-01"), "{text}");
        assert!(text.contains("00:30 bob: good night"), "{text}");

        // Two hours east, both are on 1 May: one date row.
        let offset = jiff::tz::Offset::from_hours(2).unwrap_or_else(|e| panic!("{e}"));
        app.set_time_zone(TimeZone::fixed(offset));
        let text = screen(&app).join("\n");
        assert!(!text.contains("2024-04-30"), "{text}");
        assert_eq!(text.matches("Wed 2024-05-01").count(), 1, "{text}");
        assert!(text.contains("01:30 bob: still up?"), "{text}");
        assert!(text.contains("02:30 bob: good night"), "{text}");
    }

    #[test]
    fn scrolled_back_the_view_shows_older_lines_and_how_many_are_below() {
        let at = Timestamp(1_714_564_800_000);
        let history: Vec<HistoryEntry> = (1..=100)
            .map(|i| entry(i, Direction::Incoming, "bob", at, &format!("message {i}")))
            .collect();
        let mut app = with_history(&history);
        let text = screen(&app).join("\n");
        assert!(text.contains("message 100"), "{text}");
        app.on_key(crossterm::event::KeyEvent::from(
            crossterm::event::KeyCode::PageUp,
        ));
        let text = screen(&app).join("\n");
        assert!(text.contains("message 85"), "{text}");
        assert!(!text.contains("message 100"), "{text}");
        assert!(text.contains("15 newer: End"), "{text}");
        app.on_key(crossterm::event::KeyEvent::from(
            crossterm::event::KeyCode::Home,
        ));
        let text = screen(&app).join("\n");
        assert!(text.contains("message 1 "), "{text}");
        assert!(text.contains("Wed 2024-05-01"), "{text}");
    }

    #[test]
    fn the_help_screen_lists_the_keys_and_commands() {
        let mut app = sample();
        app.on_key(crossterm::event::KeyEvent::from(
            crossterm::event::KeyCode::F(1),
        ));
        let text = screen(&app).join("\n");
        for needle in [
            "PageUp, PageDown",
            "/find TEXT",
            "/send PATH",
            "Ctrl-P, Ctrl-N",
        ] {
            assert!(text.contains(needle), "{needle}:\n{text}");
        }
    }

    #[test]
    fn a_tiny_terminal_does_not_panic() {
        let app = sample();
        for (w, h) in [(1, 1), (10, 5), (30, 8)] {
            let mut terminal =
                Terminal::new(TestBackend::new(w, h)).unwrap_or_else(|e| panic!("{e}"));
            terminal
                .draw(|frame| draw(frame, &app))
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
