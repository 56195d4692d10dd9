//! A small peer for `cargo xtask demo`, and an example of the netlayer API.
//!
//! It registers with an introduction server, then takes commands on stdin
//! and reports events on stdout, one line each:
//!
//! ```text
//! commands                         events
//! connect <uri>                    ready <uri>
//! say <name> <text>                registered <server-id> | unregistered <server-id>
//! introduce <name> <uri>           connected <name> <designator> <in|out>
//! quit                             said <name> <text>
//!                                  introduced-to <uri> (by <name>)
//!                                  relayed <designator> (the server made the socket)
//!                                  closed <name> | error <text>
//! ```
//!
//! Connections are end-to-end encrypted unless `--plaintext` is given.
//!
//! On every connection both sides first send `<demo:hello NAME>` (as CapTP
//! peers both send `op:start-session`), then `<demo:say TEXT>` or
//! `<demo:introduce URI>` messages, as Syrup values back to back.
//!
//! Run: `cargo run -p uds-netlayer --example demo_peer -- --name alice --intro PATH`.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use uds_handshake::Identity;
use uds_netlayer::{Connection, Direction, UdsNetlayer};
use uds_syrup::codec::Framing;
use uds_syrup::{Locator, Value};

/// What connection tasks tell the main loop.
enum Event {
    /// A connection said hello; its `connected` line is printed by the main
    /// loop once `say` can reach it, so a command sent as soon as that line
    /// is seen finds the connection.
    Hello {
        name: String,
        id: u64,
        out: mpsc::Sender<Value>,
        /// The rest of the `connected` line: designator and direction.
        line: String,
    },
    Said(String, String),
    Introduce(String, String),
    Closed(String, u64),
}

fn hello(name: &str) -> Value {
    Value::record(Value::symbol("demo:hello"), [Value::string(name)])
}

fn say(text: &str) -> Value {
    Value::record(Value::symbol("demo:say"), [Value::string(text)])
}

fn introduce(uri: &str) -> Value {
    Value::record(Value::symbol("demo:introduce"), [Value::string(uri)])
}

/// Runs one connection: send our hello, learn the peer's name, then pass
/// messages both ways.
async fn run_connection(me: String, conn: Connection, events: mpsc::Sender<Event>) {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let direction = conn.info().direction;
    let designator = conn.peer().designator().to_owned();
    let mut framed = conn.framed(Framing::Raw);
    if framed.send(hello(&me)).await.is_err() {
        return;
    }
    let name = match framed.next().await {
        Some(Ok(v)) => match v
            .as_record_labeled("demo:hello")
            .and_then(|r| r.field(0)?.as_str())
        {
            Some(n) => n.to_owned(),
            None => {
                println!("error {designator} did not say hello: {v}");
                return;
            }
        },
        _ => {
            println!("error {designator} closed before saying hello");
            return;
        }
    };
    let dir = if direction == Direction::Outgoing {
        "out"
    } else {
        "in"
    };
    let (tx, mut rx) = mpsc::channel::<Value>(16);
    if events
        .send(Event::Hello {
            name: name.clone(),
            id,
            out: tx,
            line: format!("{designator} {dir}"),
        })
        .await
        .is_err()
    {
        return;
    }
    let (mut sink, mut stream) = framed.split();
    loop {
        tokio::select! {
            outgoing = rx.recv() => match outgoing {
                Some(v) => if sink.send(v).await.is_err() { break },
                None => break,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(v)) => {
                    let text = |label| v.as_record_labeled(label).and_then(|r| r.field(0)?.as_str()).map(str::to_owned);
                    let event = if let Some(t) = text("demo:say") {
                        Event::Said(name.clone(), t)
                    } else if let Some(uri) = text("demo:introduce") {
                        Event::Introduce(name.clone(), uri)
                    } else {
                        println!("error unknown message from {name}: {v}");
                        continue;
                    };
                    if events.send(event).await.is_err() { break }
                }
                _ => break,
            },
        }
    }
    let _ = events.send(Event::Closed(name, id)).await;
}

/// Connects to `uri` in the background and runs the connection.
fn spawn_connect(net: &UdsNetlayer, uri: &str, me: &str, events: &mpsc::Sender<Event>) {
    let loc: Locator = match uri.parse() {
        Ok(l) => l,
        Err(e) => {
            println!("error {e}");
            return;
        }
    };
    let (net, me, events) = (net.clone(), me.to_owned(), events.clone());
    tokio::spawn(async move {
        match net.connect(&loc).await {
            Ok(conn) => run_connection(me, conn, events).await,
            Err(e) => println!("error connect: {e}"),
        }
    });
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut name, mut intro, mut key, mut plaintext) = (None, None, None, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--name" => name = args.next(),
            "--intro" => intro = args.next().map(PathBuf::from),
            "--key" => key = args.next().map(PathBuf::from),
            "--plaintext" => plaintext = true,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let name = name.ok_or("--name NAME is required")?;
    let intro = intro.ok_or("--intro PATH is required")?;
    let identity = match key {
        Some(k) => Identity::load_or_generate(&k)?.0,
        None => Identity::generate(),
    };
    let mut builder = UdsNetlayer::builder()
        .identity(Arc::new(identity))
        .intro_path(intro)
        .backoff(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_millis(500),
        );
    if plaintext {
        builder = builder.plaintext();
    }
    let net = builder.build()?;
    net.registered().await;
    println!("ready {}", net.location());

    // Report registrations as they come and go.
    let watcher = net.clone();
    let mut changes = net.server_changes();
    tokio::spawn(async move {
        let mut known = BTreeSet::new();
        loop {
            let now: BTreeSet<_> = watcher.registered_servers().into_iter().collect();
            for s in now.difference(&known) {
                println!("registered {s}");
            }
            for s in known.difference(&now) {
                println!("unregistered {s}");
            }
            known = now;
            if changes.changed().await.is_err() {
                return;
            }
        }
    });

    let (events_tx, mut events) = mpsc::channel::<Event>(64);
    // Every open connection per peer name; messages go to the newest.
    let mut peers: HashMap<String, Vec<(u64, mpsc::Sender<Value>)>> = HashMap::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = stdin.next_line() => {
                let Some(line) = line? else { return Ok(()) };
                let mut words = line.splitn(3, ' ');
                match (words.next(), words.next(), words.next()) {
                    (Some("connect"), Some(uri), None) => {
                        spawn_connect(&net, uri, &name, &events_tx);
                    }
                    (Some("say"), Some(to), Some(text)) => match peers.get(to).and_then(|v| v.last()) {
                        Some((_, tx)) => { let _ = tx.send(say(text)).await; }
                        None => println!("error no connection to {to}"),
                    },
                    (Some("introduce"), Some(to), Some(uri)) => match peers.get(to).and_then(|v| v.last()) {
                        Some((_, tx)) => { let _ = tx.send(introduce(uri)).await; }
                        None => println!("error no connection to {to}"),
                    },
                    (Some("quit"), None, None) => return Ok(()),
                    _ => println!("error unknown command {line:?}"),
                }
            }
            conn = net.accept() => {
                let conn = conn?;
                if conn.info().relayed {
                    println!("relayed {}", conn.peer().designator());
                }
                tokio::spawn(run_connection(name.clone(), conn, events_tx.clone()));
            }
            Some(event) = events.recv() => match event {
                Event::Hello { name: peer, id, out, line } => {
                    println!("connected {peer} {line}");
                    peers.entry(peer).or_default().push((id, out));
                }
                Event::Said(peer, text) => println!("said {peer} {text}"),
                Event::Introduce(peer, uri) => {
                    println!("introduced-to {uri} (by {peer})");
                    spawn_connect(&net, &uri, &name, &events_tx);
                }
                Event::Closed(peer, id) => {
                    if let Some(conns) = peers.get_mut(&peer) {
                        conns.retain(|(i, _)| *i != id);
                    }
                    println!("closed {peer}");
                }
            },
        }
    }
}
