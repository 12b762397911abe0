ALTER TABLE users ADD COLUMN phone_country_code TEXT;
