// SHA-256 against FIPS 180-4 / NIST example vectors (Python's hashlib gives the same values).
#include <doctest/doctest.h>

#include "helpers.h"
#include "util/sha256.h"

using warmup::sha256_hex;

TEST_CASE("sha256 NIST vectors") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex(std::string(1000000, 'a')) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256 streaming equals one-shot across block boundaries") {
  std::string data;
  for (int i = 0; i < 1000; ++i) data += char(i * 7 + 3);
  for (size_t split : {0, 1, 55, 56, 63, 64, 65, 500}) {
    warmup::Sha256 h;
    h.update(data.substr(0, split)).update(data.substr(split));
    CHECK(h.hex() == sha256_hex(data));
  }
}

TEST_CASE("sha256_path of a file and a directory") {
  warmup::test::TempDir d;
  auto f = d.write("a/x.txt", "abc");
  CHECK(warmup::sha256_path(f) == sha256_hex("abc"));
  std::string dir1 = warmup::sha256_path(d.path / "a");
  d.write("a/y.txt", "more");
  CHECK(warmup::sha256_path(d.path / "a") != dir1);
}
