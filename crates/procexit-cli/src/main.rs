fn main() {
    println!("procexit");
}
