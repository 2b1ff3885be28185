fn main() {
    println!("regcheck: under construction");
}
