//! The app's rules, driven with keys, events and history pages: no terminal, no IO.

use super::*;
use vcom_client::{MessageKind, SendOutcome};

fn user(name: &str) -> UserId {
    UserId::new(name).unwrap_or_else(|e| panic!("{e}"))
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
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
        kind: MessageKind::Text,
        data: bytes::Bytes::copy_from_slice(body.as_bytes()),
        read: false,
        delivery: (direction == Direction::Outgoing).then_some(DeliveryState::Stored),
    }
}

/// Bob's conversation with `n` messages in the history (rows 1 to `n`, every third one
/// alice's), none unread.
fn bob_with_history(n: i64) -> (App, Vec<HistoryEntry>) {
    let mut app = app_with_friends();
    let history: Vec<HistoryEntry> = (1..=n)
        .map(|i| {
            if i % 3 == 0 {
                entry(
                    i,
                    Direction::Outgoing,
                    "alice",
                    Some("bob"),
                    &format!("mine {i}"),
                )
            } else {
                entry(
                    i,
                    Direction::Incoming,
                    "bob",
                    Some("bob"),
                    &format!("his {i}"),
                )
            }
        })
        .collect();
    let summary = ConversationSummary {
        query: HistoryQuery::With(user("bob")),
        last_id: n,
        unread: 0,
    };
    app.on_conversations(&[summary], n);
    app.set_view_rows(10);
    app.select(1);
    (app, history)
}

/// Answers the app's reads from `history` as the IO loop does, until it asks no more.
fn serve(app: &mut App, history: &[HistoryEntry]) -> Vec<Load> {
    let mut loads = Vec::new();
    while let Some(load) = app.next_load() {
        let mut rows: Vec<HistoryEntry> = history
            .iter()
            .filter(|e| e.id < load.before && load.from.is_none_or(|from| e.id >= from))
            .cloned()
            .collect();
        if load.from.is_none() {
            rows = rows.split_off(rows.len().saturating_sub(load.limit));
        }
        app.on_loaded(&load, &rows);
        loads.push(load);
    }
    loads
}

fn bodies(app: &App) -> Vec<String> {
    app.selected()
        .map(|c| c.lines.iter().map(|l| l.body.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn a_message_for_another_conversation_counts_as_unread_and_calls_attention() {
    let mut app = app_with_friends();
    app.on_message(&user("bob"), None, Timestamp(1), "hi".into(), 1);
    app.on_message(&user("bob"), None, Timestamp(2), "there?".into(), 2);
    let bob = &app.conversations()[1];
    assert_eq!(bob.id, ConversationId::User(user("bob")));
    assert_eq!(bob.unread, 2);
    assert_eq!(bob.lines.len(), 2);
    assert_eq!(
        app.take_alerts(),
        vec![
            Alert {
                conversation: "bob".into(),
                sender: "bob".into()
            };
            2
        ]
    );
    assert!(app.take_alerts().is_empty());
}

#[test]
fn switching_to_a_conversation_clears_its_unread_count_and_saves_a_read_mark() {
    let mut app = app_with_friends();
    app.on_message(&user("bob"), None, Timestamp(1), "hi".into(), 7);
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.selected_index(), 1);
    assert_eq!(app.conversations()[1].unread, 0);
    assert_eq!(
        app.take_read_marks(),
        vec![(HistoryQuery::With(user("bob")), 7)]
    );
    // A message to the shown conversation is read at once, and raises no alert.
    app.take_alerts();
    app.on_message(&user("bob"), None, Timestamp(2), "again".into(), 8);
    assert_eq!(app.conversations()[1].unread, 0);
    assert_eq!(
        app.take_read_marks(),
        vec![(HistoryQuery::With(user("bob")), 8)]
    );
    assert!(app.take_alerts().is_empty());
}

#[test]
fn unread_counts_from_the_history_show_until_the_conversation_is_opened() {
    let mut app = app_with_friends();
    let summaries = [
        ConversationSummary {
            query: HistoryQuery::Group(GroupId(3)),
            last_id: 40,
            unread: 2,
        },
        ConversationSummary {
            query: HistoryQuery::With(user("carol")),
            last_id: 30,
            unread: 0,
        },
    ];
    app.on_conversations(&summaries, 40);
    let group = app
        .conversations()
        .iter()
        .position(|c| c.id == ConversationId::Group(GroupId(3)))
        .unwrap_or_else(|| panic!("the group is listed"));
    assert_eq!(app.conversations()[group].unread, 2);
    app.select(2);
    assert!(app.take_read_marks().is_empty(), "carol was read already");
    app.select(group);
    assert_eq!(app.conversations()[group].unread, 0);
    assert_eq!(
        app.take_read_marks(),
        vec![(HistoryQuery::Group(GroupId(3)), 40)]
    );
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
fn a_sent_line_shows_at_once_as_pending_then_with_the_servers_answer() {
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
    app.on_sending(
        &Target::User(user("bob")),
        Timestamp(60_000),
        "hello bob".into(),
        41,
    );
    app.on_sending(
        &Target::User(user("bob")),
        Timestamp(60_000),
        "and you?".into(),
        42,
    );
    let marks = |app: &App| -> Vec<Option<DeliveryState>> {
        app.conversations()[1]
            .lines
            .iter()
            .map(|l| l.delivery)
            .collect()
    };
    assert_eq!(
        marks(&app),
        [Some(DeliveryState::Pending), Some(DeliveryState::Pending)]
    );
    let line = &app.conversations()[1].lines[0];
    assert_eq!((line.own, line.sender.as_str()), (true, "alice"));

    // Answers may come in any order; each finds its line by the client message id.
    app.on_delivery(42, Delivery::Refused(SendOutcome::UnknownRecipient));
    app.on_delivery(41, Delivery::Stored);
    assert_eq!(
        marks(&app),
        [
            Some(DeliveryState::Stored),
            Some(DeliveryState::Refused(SendOutcome::UnknownRecipient))
        ]
    );
    assert!(
        app.status_line().contains("not stored: no such user"),
        "{}",
        app.status_line()
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
    app.on_key(ctrl('c'));
    assert!(app.should_quit());
    assert_eq!(app.input(), "");
}

#[test]
fn help_opens_with_the_command_or_f1_and_any_key_closes_it_without_quitting() {
    let mut app = App::new(user("alice"), "s");
    typed(&mut app, "/help");
    assert!(app.help_shown());
    app.on_key(key(KeyCode::Esc));
    assert!(!app.help_shown());
    assert!(!app.should_quit());
    app.on_key(key(KeyCode::F(1)));
    assert!(app.help_shown());
    app.on_key(key(KeyCode::Char('x')));
    assert!(!app.help_shown());
    assert_eq!(app.input(), "", "the key that closes the help is not typed");
}

#[test]
fn the_help_screen_lists_every_command_the_app_knows() {
    for command in [
        "/add", "/group", "/find", "/send", "/accept", "/help", "/quit",
    ] {
        assert!(
            HELP_SCREEN.iter().any(|(keys, _)| keys.contains(command)),
            "{command} is not in the help"
        );
    }
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
fn send_asks_to_send_the_file_to_the_shown_user_and_shows_its_progress() {
    let mut app = app_with_friends();
    assert_eq!(
        typed(&mut app, "/send notes.txt"),
        None,
        "not to the broadcasts"
    );
    assert!(app.status_line().contains("pick one first"));
    app.select(1);
    assert_eq!(
        typed(&mut app, "/send /tmp/notes.txt"),
        Some(Action::SendFile {
            to: user("bob"),
            path: "/tmp/notes.txt".into()
        })
    );
    app.on_send_started(1, user("bob"), "notes.txt".into(), 4096);
    app.on_send_progress(1, 1024, 4096);
    assert_eq!(
        app.status_line(),
        "sending notes.txt to bob 25% (1.0 KiB of 4.0 KiB)"
    );
    app.on_send_finished(1, Ok(()));
    assert_eq!(app.status_line(), "sent notes.txt to bob (4.0 KiB)");
    app.on_send_started(2, user("bob"), "big.iso".into(), 10);
    app.on_send_finished(2, Err("declined by the recipient".into()));
    assert_eq!(
        app.status_line(),
        "big.iso: not sent: declined by the recipient"
    );
}

#[test]
fn group_messages_go_to_the_groups_conversation() {
    let mut app = App::new(user("alice"), "s");
    app.on_message(
        &user("bob"),
        Some(GroupId(3)),
        Timestamp(1),
        "hey".into(),
        1,
    );
    assert_eq!(app.conversations()[1].id, ConversationId::Group(GroupId(3)));
    assert_eq!(app.conversations()[1].unread, 1);
    app.on_broadcast("maintenance".into(), Timestamp(2));
    assert_eq!(app.conversations()[0].lines.len(), 1);
}

#[test]
fn the_shown_conversation_asks_for_its_newest_page_first_with_both_sides_in_order() {
    let (mut app, history) = bob_with_history(5);
    let loads = serve(&mut app, &history);
    assert_eq!(
        loads,
        [Load {
            conversation: ConversationId::User(user("bob")),
            before: 6,
            from: None,
            limit: PAGE,
        }]
    );
    assert_eq!(bodies(&app), ["his 1", "his 2", "mine 3", "his 4", "his 5"]);
    let mine = &app.conversations()[1].lines[2];
    assert!(mine.own);
    assert_eq!(mine.delivery, Some(DeliveryState::Stored));
    assert!(app.conversations()[1].complete());
    // Conversations not shown are not read.
    assert!(app.conversations()[2].lines.is_empty());
}

#[test]
fn scrolling_back_reads_older_pages_only_when_the_view_nears_the_oldest_line() {
    let (mut app, history) = bob_with_history(1000);
    assert_eq!(serve(&mut app, &history).len(), 1);
    assert_eq!(app.conversations()[1].lines.len(), PAGE);
    assert_eq!(app.conversations()[1].scroll, 0);

    // A page up is nowhere near the oldest line read: no read.
    app.on_key(key(KeyCode::PageUp));
    assert_eq!(app.conversations()[1].scroll, 9);
    assert!(serve(&mut app, &history).is_empty());

    // Close to it: the page before the oldest row read.
    for _ in 0..20 {
        app.on_key(key(KeyCode::PageUp));
    }
    let loads = serve(&mut app, &history);
    assert_eq!(loads.len(), 1, "{loads:?}");
    assert_eq!(loads[0].before, 801);
    assert_eq!(app.conversations()[1].lines.len(), 2 * PAGE);
    assert_eq!(bodies(&app)[0], "his 601");

    app.on_key(key(KeyCode::PageDown));
    assert_eq!(app.conversations()[1].scroll, 189 - 9);
    app.on_key(key(KeyCode::End));
    assert_eq!(app.conversations()[1].scroll, 0);
}

#[test]
fn home_reads_the_whole_history_and_shows_its_first_message() {
    let (mut app, history) = bob_with_history(5000);
    serve(&mut app, &history);
    app.on_key(key(KeyCode::Home));
    serve(&mut app, &history);
    let bob = &app.conversations()[1];
    assert!(bob.complete());
    assert_eq!(bob.lines.len(), 5000);
    assert_eq!(bob.scroll, 4999);
    assert_eq!(bodies(&app)[0], "his 1");
}

#[test]
fn a_message_arriving_while_scrolled_back_keeps_the_view_still_and_counts_below() {
    let (mut app, history) = bob_with_history(100);
    serve(&mut app, &history);
    app.on_key(key(KeyCode::PageUp));
    let scroll = app.conversations()[1].scroll;
    app.on_message(&user("bob"), None, Timestamp(1), "new".into(), 101);
    assert_eq!(app.conversations()[1].scroll, scroll + 1);
}

#[test]
fn find_jumps_to_the_newest_match_and_ctrl_p_reads_back_to_an_older_one() {
    let (mut app, history) = bob_with_history(1000);
    serve(&mut app, &history);
    assert_eq!(
        typed(&mut app, "/find MINE 9"),
        Some(Action::Find {
            conversation: ConversationId::User(user("bob")),
            text: "MINE 9".into()
        })
    );
    // What the history found (rows 9, 90, 93, ...): two matches, one not read yet.
    app.on_found(
        ConversationId::User(user("bob")),
        "MINE 9".into(),
        &[9, 999],
    );
    assert_eq!(app.current_match(), Some(LineKey::Row(999)));
    assert!(
        app.status_line().starts_with("match 2 of 2"),
        "{}",
        app.status_line()
    );

    app.on_key(ctrl('p'));
    assert_eq!(app.current_match(), Some(LineKey::Row(9)));
    let loads = serve(&mut app, &history);
    assert_eq!((loads[0].from, loads[0].before), (Some(9), 801));
    // Row 9 is near the start: the rows before it are read too, as a page.
    assert_eq!((loads[1].from, loads[1].before), (None, 9));
    assert_eq!(loads.len(), 2);
    let bob = &app.conversations()[1];
    let at = bob
        .position(LineKey::Row(9))
        .unwrap_or_else(|| panic!("row 9 is read"));
    assert_eq!(bob.lines[at].body, "mine 9");
    // In view: the view's bottom line is at most a screen below it.
    let bottom = bob.lines.len() - 1 - bob.scroll;
    assert!(bottom >= at && bottom - at < 10, "{bottom} {at}");

    app.on_key(ctrl('n'));
    assert_eq!(app.current_match(), Some(LineKey::Row(999)));
    // Esc ends the search, not the chat.
    app.on_key(key(KeyCode::Esc));
    assert!(app.search().is_none());
    assert!(!app.should_quit());
}

#[test]
fn find_covers_the_lines_of_this_session_and_says_when_nothing_matches() {
    let (mut app, history) = bob_with_history(3);
    serve(&mut app, &history);
    app.on_sending(
        &Target::User(user("bob")),
        Timestamp(9),
        "lunch today?".into(),
        1,
    );
    app.on_found(ConversationId::User(user("bob")), "LUNCH".into(), &[]);
    let key = app.current_match().unwrap_or_else(|| panic!("a match"));
    assert!(matches!(key, LineKey::Live(_)));
    app.on_found(ConversationId::User(user("bob")), "dinner".into(), &[]);
    assert!(app.search().is_none());
    assert!(app.status_line().contains("no message holds"));
}

#[test]
fn messages_of_this_session_follow_the_history_once_it_is_read() {
    // A message arrives for a conversation whose history has not been read yet.
    let (mut app, history) = bob_with_history(3);
    app.select(2);
    app.on_message(&user("bob"), None, Timestamp(99), "live".into(), 4);
    app.select(1);
    serve(&mut app, &history);
    assert_eq!(bodies(&app), ["his 1", "his 2", "mine 3", "live"]);
}

#[test]
fn groups_are_listed_by_name_once_the_server_has_named_them() {
    let mut app = App::new(user("alice"), "s");
    app.on_message(
        &user("bob"),
        Some(GroupId(3)),
        Timestamp(1),
        "hey".into(),
        1,
    );
    assert_eq!(app.title(&ConversationId::Group(GroupId(3))), "group 3");
    app.on_groups(&[
        (GroupId(3), "team".into()),
        (GroupId(4), "ops\u{1b}[2J".into()),
    ]);
    assert_eq!(app.title(&ConversationId::Group(GroupId(3))), "team");
    // Names come from other users: shown harmless.
    assert_eq!(
        app.title(&ConversationId::Group(GroupId(4))),
        "ops\\u{1b}[2J"
    );
    assert_eq!(app.conversations().len(), 3);
}

#[test]
fn a_message_that_could_not_be_sent_loses_its_line_and_says_why() {
    let mut app = app_with_friends();
    app.select(1);
    let bob = Target::User(user("bob"));
    app.on_sending(&bob, Timestamp(1), "kept".into(), 1);
    app.on_sending(&bob, Timestamp(1), "x".repeat(9000), 2);
    app.on_send_failed(2, "a message may hold at most 8192 bytes");
    assert_eq!(bodies(&app), ["kept"]);
    assert_eq!(
        app.status_line(),
        "not sent: a message may hold at most 8192 bytes"
    );
}

#[test]
fn a_message_pending_from_an_earlier_session_takes_the_answer_to_its_resend() {
    // Row 3 (alice's) was left pending; row 2 is bob's.
    let (mut app, mut history) = bob_with_history(3);
    history[2].delivery = Some(DeliveryState::Pending);
    // Sent again before its conversation is read, and after.
    app.on_resending(3, 77);
    serve(&mut app, &history);
    let line = |app: &App| app.conversations()[1].lines[2].clone();
    assert_eq!(line(&app).client_id, Some(77));
    assert_eq!(line(&app).delivery, Some(DeliveryState::Pending));
    app.on_delivery(77, Delivery::Stored);
    assert_eq!(line(&app).delivery, Some(DeliveryState::Stored));
    app.on_resending(3, 78);
    assert_eq!(line(&app).delivery, Some(DeliveryState::Pending));
    app.on_delivery(78, Delivery::Stored);
    assert_eq!(line(&app).delivery, Some(DeliveryState::Stored));
}
