//! Peer roles: this test binary re-executed (see `harness::Peer`) so that
//! the two ends of a connection belong to different processes.  Protocol:
//! one command per stdin line, one `PEER <answer>` per stdout line.

use std::{
    io::{BufRead, Read, Write},
    net::{TcpListener, TcpStream},
};

use crate::sockets::{errno_name, set_linger, set_repair};

fn say(msg: &str) {
    println!("PEER {msg}");
    std::io::stdout().flush().unwrap();
}

pub fn main(spec: &str) -> ! {
    let args: Vec<&str> = spec.split_whitespace().collect();
    let addr = format!("{}:{}", args[1], args[2]);
    let addr = if args[1].contains(':') {
        format!("[{}]:{}", args[1], args[2])
    } else {
        addr
    };
    match args[0] {
        "server" => {
            let listener = TcpListener::bind(&addr).expect("bind");
            say("listening");
            let (conn, _) = listener.accept().expect("accept");
            say("accepted");
            let mut listener = Some(listener);
            let mut conn = Some(conn);
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                match line.as_str() {
                    "vanish" => {
                        let c = conn.take().expect("connection");
                        set_repair(&c);
                        drop(c);
                        say("done");
                    }
                    "linger-close" => {
                        let c = conn.take().expect("connection");
                        set_linger(&c, true, 0);
                        drop(c);
                        say("done");
                    }
                    "close-listener" => {
                        listener.take();
                        say("done");
                    }
                    "exit" => break,
                    other => say(&format!("unknown {other}")),
                }
            }
        }
        "client" => {
            let mut conn = TcpStream::connect(&addr).expect("connect");
            say(&format!("connected {}", conn.local_addr().unwrap().port()));
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                match line.as_str() {
                    "send" => match conn.write(b"x") {
                        Ok(_) => say("sent"),
                        Err(e) => say(&format!("err {}", errno_name(&e))),
                    },
                    "recv" => {
                        let mut buf = [0u8; 16];
                        match conn.read(&mut buf) {
                            Ok(n) => say(&format!("read {n}")),
                            Err(e) => say(&format!("err {}", errno_name(&e))),
                        }
                    }
                    "exit" => break,
                    other => say(&format!("unknown {other}")),
                }
            }
        }
        other => panic!("unknown peer role {other}"),
    }
    std::process::exit(0)
}
