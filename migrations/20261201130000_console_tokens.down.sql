DROP TABLE console_tokens;
