// Writes tests/data/format1.db and format1.key: a small database in storage
// format version 1 that every later build must still read
// (database_test.cc, FormatFixture). Run once per format version, by hand:
//   build/make_format1_fixture tests/data
// The key is a test key, used for nothing else.
#include <cstdio>
#include <string>

#include "crypto/crypto.h"
#include "storage/database.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output dir>\n", argv[0]);
    return 2;
  }
  std::string dir = argv[1];
  auto key = silo::crypto::SecretKey::Random();
  auto db = silo::storage::Database::Open(dir + "/format1.db", key);
  if (!db.ok()) return 1;
  auto& d = **db;
  if (!d.Exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").ok()) return 1;
  for (int i = 0; i < 200; ++i) {
    std::string body = "format one note " + std::to_string(i);
    body.resize(64, '.');
    auto insert = d.Prepare("INSERT INTO notes (body) VALUES (?)");
    insert->Bind(1, body);
    if (!insert->Run().ok()) return 1;
  }
  std::string hex =
      silo::crypto::HexEncode(std::string(reinterpret_cast<const char*>(key.data()), key.size()));
  FILE* out = std::fopen((dir + "/format1.key").c_str(), "w");
  if (out == nullptr) return 1;
  std::fprintf(out, "%s\n", hex.c_str());
  std::fclose(out);
  return 0;
}
