mod common;
use common::*;
use std::io::Read;
#[test]
fn scratch() {
    let sb = Sandbox::new();
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "X");
    PolicySpec::new(&sb, "wallet", "files", &wallet)
        .openpgp_only(&key(OPENPGP_PUBLIC), "zstd")
        .write(&sb);
    sb.backup("wallet");
    let p = store_object(&sb.store(), ".gpg");
    let bytes = std::fs::read(&p).unwrap();
    let ids = lifeboat::Identities::load(&[key(OPENPGP_SECRET)]).unwrap();
    std::panic::set_hook(Box::new(|_| {}));
    let mut panics = vec![];
    for cut in 0..bytes.len() {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match lifeboat::codec::decrypt_reader(std::io::Cursor::new(bytes[..cut].to_vec()), &ids)
            {
                Ok(mut r) => {
                    let mut v = vec![];
                    let _ = r.read_to_end(&mut v);
                }
                Err(_) => {}
            }
        }));
        if r.is_err() {
            panics.push(cut);
        }
    }
    let _ = std::panic::take_hook();
    println!("len {} panics at {:?}", bytes.len(), panics);
    println!("head {:02x?}", &bytes[..40]);
}
