// Test plugin: an ordinary shared library with no warmup entry symbol.
extern "C" __attribute__((visibility("default"))) int just_a_function(void) { return 42; }
