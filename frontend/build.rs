fn main() {
    lalrpop::process_src()
        .expect("the .attn grammar failed to generate (a bug in grammar.lalrpop)");
}
