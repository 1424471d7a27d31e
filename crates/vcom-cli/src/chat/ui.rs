//! Drawing the [`App`] with ratatui: conversations on the left, messages on the right,
//! a status line and the input line at the bottom. Pure rendering: no IO, no state
//! changes, so it is tested on ratatui's `TestBackend`. Fits an 80x24 terminal.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph};

use super::app::{App, ChatLine, ConversationId};
use crate::client::format::clock;

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
    draw_messages(frame, app, messages);
    draw_status(frame, app, status);
    draw_input(frame, app, input);
}

fn draw_conversations(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let items: Vec<ListItem<'_>> = app
        .conversations()
        .iter()
        .map(|c| {
            let mut spans = vec![Span::raw(c.id.title())];
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
    let (title, lines) = match app.selected() {
        Some(c) => (format!(" {} ", c.id.title()), c.lines.as_slice()),
        None => (String::new(), &[][..]),
    };
    let block = Block::new().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width.max(1));
    let height = usize::from(inner.height);
    let mut rows: Vec<Line<'_>> = lines.iter().flat_map(|l| wrap(l, width)).collect();
    if rows.is_empty() {
        let hint = match app.selected().map(|c| &c.id) {
            Some(ConversationId::Broadcasts) => "No broadcasts yet.",
            _ => "No messages yet. Type below and press Enter.",
        };
        rows.push(Line::styled(hint, Style::new().fg(Color::DarkGray)));
    }
    // The newest rows, at the bottom of the view.
    let skip = rows.len().saturating_sub(height);
    let shown: Vec<Line<'_>> = rows.into_iter().skip(skip).collect();
    frame.render_widget(Paragraph::new(shown), inner);
}

/// One message as screen rows of at most `width` characters: `12:03 bob: text`.
fn wrap(line: &ChatLine, width: usize) -> Vec<Line<'static>> {
    let sender_style = if line.own {
        Style::new().fg(Color::Green).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
    };
    let time = format!("{} ", clock(line.at));
    let sender = format!("{}: ", line.sender);
    let mut chars: Vec<(char, Style)> = Vec::new();
    chars.extend(time.chars().map(|c| (c, Style::new().fg(Color::DarkGray))));
    chars.extend(sender.chars().map(|c| (c, sender_style)));
    chars.extend(
        line.body
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .map(|c| (c, Style::new())),
    );
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
        Some(id) => format!(" to {} ", id.title()),
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
        Direction, GroupId, HistoryEntry, MessageKind, Timestamp, TransferId, UserId,
    };

    use super::*;
    use crate::chat::app::OfferPrompt;

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
        app.on_message(&user("bob"), None, noon, "hi alice!".into(), false);
        app.on_message(&user("carol"), None, noon, "lunch?".into(), true);
        app.on_message(&user("carol"), None, noon, "at 1?".into(), true);
        app.on_message(
            &user("dave"),
            Some(GroupId(3)),
            noon,
            "standup".into(),
            true,
        );
        app.select(1);
        app
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
        println!("{text}");
        assert!(lines[0].contains("alice@127.0.0.1:7420"), "{text}");
        assert!(lines[0].contains(" bob "), "{text}");
        assert!(text.contains("broadcasts"));
        assert!(text.contains("> bob"));
        assert!(text.contains("carol (2)"));
        assert!(text.contains("group 3 (1)"));
        assert!(text.contains("12:03 bob: hi alice!"));
        assert!(lines[20].contains("Tab/Up/Down: switch"), "{text}");
        assert!(lines[21].contains("to bob"), "{text}");
        assert!(lines[22].contains("see you"), "{text}");
    }

    #[test]
    fn the_newest_messages_stay_in_view_and_long_ones_wrap() {
        let mut app = App::new(user("alice"), "s");
        app.on_friends(&[user("bob")]);
        for i in 0..40 {
            app.on_message(
                &user("bob"),
                None,
                Timestamp(0),
                format!("message {i}"),
                false,
            );
        }
        let long = "x".repeat(120);
        app.on_message(&user("bob"), None, Timestamp(0), long, false);
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
        // What `vcom chat` loads from a history written by an earlier session.
        let at = |minute: i64| Timestamp(1_714_564_800_000 + minute * 60_000);
        let entry = |id: i64, direction: Direction, sender: &str, body: &str| HistoryEntry {
            id,
            direction,
            sender: user(sender),
            peer: Some(user("bob")),
            group: None,
            sent_at: at(id),
            received_at: at(id),
            kind: MessageKind::Text,
            data: Bytes::copy_from_slice(body.as_bytes()),
            read: false,
        };
        let history = [
            entry(1, Direction::Incoming, "bob", "hi alice"),
            entry(2, Direction::Outgoing, "alice", "hi bob, all well?"),
            entry(3, Direction::Incoming, "bob", "yes!"),
        ];
        let mut app = App::new(user("alice"), "127.0.0.1:7420");
        app.on_friends(&[user("bob")]);
        app.load_history(&history, 0);
        app.select(1);

        let shown = screen(&app);
        let text = shown.join("\n");
        let rows: Vec<usize> = [
            "12:01 bob: hi alice",
            "12:02 alice: hi bob, all well?",
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
